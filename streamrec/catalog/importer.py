"""Catalog files (CSV, JSON lines, Parquet) -> validated records, and a reject for every bad row.

Pure apart from reading the file: no Kafka here (the CLI sends what :func:`read_catalog_file` returns).

- Column mapping: ``mapping`` sends a file column to a contract field (``{"title": "name"}``).
- Columns that are neither contract fields nor mapped are refused by default (``extra="error"``); ``ignore``
  drops them and ``attributes`` puts them into the record's attributes (as strings in CSV).
- CSV cells are text: ``price`` is parsed as a number, ``available``/``deleted`` as true/false/yes/no/1/0,
  ``attributes`` as a JSON object, ``updated_at`` as RFC 3339 or epoch milliseconds. An empty cell is an
  absent value. JSON lines and Parquet values keep their types (a price given as a string is refused).
- A row without ``updated_at`` gets ``default_updated_at`` (the import time).
- Two rows with the same id in one file: every row after the first is rejected, naming the first's line.
- A row with ``deleted`` true is a tombstone: only its id and ``updated_at`` are read.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from streamrec.catalog.codec import CatalogKind, validate_record
from streamrec.catalog.models import CatalogRecord
from streamrec.errors import InvalidEventError

ExtraColumns = Literal["error", "ignore", "attributes"]
ProgressCallback = Callable[[int], None]

ROW = "<row>"
FILE = "<file>"
_UNSET: Any = object()
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_DIGITS = re.compile(r"^-?[0-9]+$")
_ITEM_FIELDS = ("item_id", "title", "description", "category", "price", "image", "available", "attributes")
_USER_FIELDS = ("user_id", "attributes")
_COMMON_FIELDS = ("updated_at", "deleted", "schema_version")


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


_SUFFIXES = {".csv": FileFormat.CSV, ".jsonl": FileFormat.JSONL, ".ndjson": FileFormat.JSONL}
_SUFFIXES |= {".json": FileFormat.JSONL, ".parquet": FileFormat.PARQUET, ".pq": FileFormat.PARQUET}


def detect_format(path: Path) -> FileFormat:
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(_SUFFIXES))
        raise InvalidEventError(
            FILE, f"cannot tell the format of {path.name} from its suffix (known: {known})"
        ) from None


def contract_fields(kind: CatalogKind) -> tuple[str, ...]:
    return (_ITEM_FIELDS if kind is CatalogKind.ITEMS else _USER_FIELDS) + _COMMON_FIELDS


@dataclass(frozen=True)
class Reject:
    """One bad row (or the whole file, ``line`` 0): where, which field, why."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        parts = (
            [self.file] + ([f"line {self.line}"] if self.line else []) + ([self.field] if self.field != FILE else [])
        )
        return ": ".join([*parts, self.reason])


class CatalogFileError(InvalidEventError):
    """The file as a whole cannot be imported (unreadable, empty, missing columns): nothing in it is used."""

    def __init__(self, reject: Reject) -> None:
        self.reject = reject
        super().__init__(reject.field, reject.reason)


@dataclass(frozen=True)
class ImportOptions:
    kind: CatalogKind
    default_updated_at: datetime
    #: contract field -> file column
    mapping: Mapping[str, str] = field(default_factory=dict)
    extra: ExtraColumns = "error"


@dataclass
class ImportResult:
    file: str
    format: FileFormat
    rows: int = 0
    records: list[tuple[int, CatalogRecord]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def check_mapping(kind: CatalogKind, mapping: Mapping[str, str]) -> None:
    allowed = contract_fields(kind)
    for target, column in mapping.items():
        if target not in allowed:
            raise InvalidEventError(
                "--map", f"{target!r} is not a field of the {kind.value} contract (fields: {', '.join(allowed)})"
            )
        if not column:
            raise InvalidEventError("--map", f"empty column name for {target}")
    columns = list(mapping.values())
    doubled = sorted({c for c in columns if columns.count(c) > 1})
    if doubled:
        raise InvalidEventError("--map", f"column {doubled[0]!r} is mapped to two fields")


class _Columns:
    """File columns -> contract fields, and which columns are extra."""

    def __init__(self, kind: CatalogKind, options: ImportOptions, name: str) -> None:
        self.kind = kind
        self.options = options
        self.name = name
        self.fields = set(contract_fields(kind))
        self.by_column = {column: target for target, column in options.mapping.items()}
        for target in self.fields:
            if target not in options.mapping:
                self.by_column.setdefault(target, target)

    def target(self, column: str) -> str | None:
        return self.by_column.get(column)

    def check_header(self, header: list[str]) -> None:
        seen: set[str] = set()
        for column in header:
            if column in seen:
                raise CatalogFileError(Reject(self.name, 1, column, "column appears twice in the header"))
            seen.add(column)
        mapped = {self.by_column[c] for c in header if c in self.by_column}
        required = [self.kind.id_field]
        if self.kind is CatalogKind.ITEMS and "deleted" not in mapped:
            required += ["title", "category"]
        missing = [f for f in required if f not in mapped]
        if missing:
            hints = ", ".join(f"{f} (or --map {f}=COLUMN)" for f in missing)
            raise CatalogFileError(Reject(self.name, 1, missing[0], f"missing required column(s): {hints}"))
        unmapped = [c for c in header if c not in self.by_column]
        if unmapped and self.options.extra == "error":
            raise CatalogFileError(
                Reject(
                    self.name,
                    1,
                    unmapped[0],
                    f"unknown column(s) {', '.join(map(repr, unmapped[:10]))}: map them with --map FIELD=COLUMN, "
                    "or pass --extra-columns ignore|attributes",
                )
            )


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected true or false (or yes/no, 1/0), got {text[:40]!r}")


def _parse_number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"not a number: {text[:40]!r}") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def _parse_json_object(text: str) -> Any:
    try:
        value = _JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _parse_timestamp_text(text: str) -> str | int:
    stripped = text.strip()
    return int(stripped) if _DIGITS.match(stripped) else stripped


_TEXT_PARSERS: dict[str, Callable[[str], Any]] = {
    "price": _parse_number,
    "available": _parse_bool,
    "deleted": _parse_bool,
    "attributes": _parse_json_object,
    "updated_at": _parse_timestamp_text,
    "schema_version": lambda text: int(text) if _DIGITS.match(text.strip()) else text,
}


class _RowBuilder:
    """Raw cells of one row -> a record or a reject; remembers ids to refuse duplicates."""

    def __init__(self, columns: _Columns, text_cells: bool, check_utf8: bool = True) -> None:
        self.columns = columns
        self.text_cells = text_cells
        self.check_utf8 = check_utf8
        self.first_line: dict[str, int] = {}

    def build(self, line: int, cells: Mapping[str, Any]) -> CatalogRecord | Reject:
        name = self.columns.name
        data: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for column, raw in cells.items():
            value = _normalise(raw, self.text_cells)
            if value is _UNSET:
                continue
            if self.check_utf8 and isinstance(value, str) and _has_undecodable(value):
                return Reject(name, line, column, f"not valid UTF-8 (byte 0x{_bad_byte(value):02X})")
            target = self.columns.target(column)
            if target is None:
                if self.columns.options.extra == "attributes":
                    extra[column] = value
                elif self.columns.options.extra == "error":
                    data[column] = value  # the model names it as an unknown field
                continue
            if self.text_cells and isinstance(value, str) and target in _TEXT_PARSERS:
                try:
                    value = _TEXT_PARSERS[target](value)
                except ValueError as exc:
                    return Reject(name, line, target, str(exc))
            elif target == "attributes" and isinstance(value, str):
                try:
                    value = _parse_json_object(value)  # JSON text in a Parquet / JSON-lines column
                except ValueError as exc:
                    return Reject(name, line, target, str(exc))
            data[target] = value
        id_field = self.columns.kind.id_field
        key = data.get(id_field)
        if isinstance(key, str):
            first = self.first_line.setdefault(key, line)
            if first != line:
                return Reject(
                    name, line, id_field, f"duplicate {id_field} {key!r} (first at line {first}); one row per id"
                )
        if data.get("deleted") is False:
            del data["deleted"]
        if data.get("deleted") is True:
            data = {k: v for k, v in data.items() if k in (id_field, "deleted", "updated_at", "schema_version")}
        elif extra:
            attributes = data.setdefault("attributes", {})
            if isinstance(attributes, dict):
                for column, value in extra.items():
                    if column in attributes:
                        return Reject(name, line, column, "given both as a column and inside attributes")
                    attributes[column] = value
        data.setdefault("updated_at", self.columns.options.default_updated_at)
        try:
            return validate_record(self.columns.kind, data)
        except InvalidEventError as exc:
            return Reject(name, line, exc.field, exc.reason)


def _normalise(raw: Any, text_cells: bool) -> Any:
    if raw is None:
        return _UNSET
    if text_cells and isinstance(raw, str) and raw == "":
        return _UNSET
    if isinstance(raw, Decimal):
        return float(raw)
    if isinstance(raw, list) and all(isinstance(p, tuple) and len(p) == 2 for p in raw):
        return dict(raw)  # a Parquet map column
    return raw


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _has_undecodable(text: str) -> bool:
    # Bytes that are not UTF-8 were decoded with surrogateescape: they are lone surrogates U+DC80..U+DCFF.
    return _UNDECODABLE.search(text) is not None


def _bad_byte(text: str) -> int:
    found = _UNDECODABLE.search(text)
    return ord(found.group()) - 0xDC00 if found else 0


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_text(raw: bytes, name: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw.decode("utf-8", errors="surrogateescape")


def _csv_rows(raw: bytes, columns: _Columns) -> Iterator[tuple[int, dict[str, Any]]]:
    text = _decode_text(raw, columns.name)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise CatalogFileError(Reject(columns.name, 0, FILE, "the file has no header row")) from None
    except csv.Error as exc:
        raise CatalogFileError(Reject(columns.name, 1, FILE, f"not a CSV header: {exc}")) from None
    header = [h.strip() for h in header]
    for column in header:
        if _has_undecodable(column):
            raise CatalogFileError(Reject(columns.name, 1, FILE, "the header is not valid UTF-8"))
    columns.check_header(header)
    line = reader.line_num
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, {ROW: InvalidEventError(ROW, f"not valid CSV: {exc}")}
            return
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield start, {ROW: InvalidEventError(ROW, f"row has {len(cells)} cells; the header has {len(header)}")}
            continue
        yield start, dict(zip(header, cells, strict=True))


def _jsonl_rows(raw: bytes, columns: _Columns) -> Iterator[tuple[int, dict[str, Any]]]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, {ROW: InvalidEventError("<payload>", f"not valid UTF-8 at byte {exc.start}")}
            continue
        try:
            value = _parse_json_object(text)
        except ValueError as exc:
            yield number, {ROW: InvalidEventError("<payload>", str(exc))}
            continue
        yield number, value


def _parquet_rows(path: Path, columns: _Columns) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CatalogFileError(Reject(columns.name, 0, FILE, f"not a readable Parquet file: {exc}")) from None
    columns.check_header(list(handle.schema_arrow.names))
    number = 0
    for batch in handle.iter_batches(batch_size=8192):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def read_catalog_file(
    path: Path, options: ImportOptions, fmt: FileFormat | None = None, progress: ProgressCallback | None = None
) -> ImportResult:
    """Every row of ``path`` validated: the records to send and the rejects (file, line, field, reason).

    Lines are the file's physical line numbers (a CSV header is line 1); for Parquet, the 1-based row number.
    Raises :class:`CatalogFileError` when the file as a whole is unusable.
    """
    check_mapping(options.kind, options.mapping)
    fmt = fmt or detect_format(path)
    name = str(path)
    columns = _Columns(options.kind, options, name)
    if not path.is_file():
        raise CatalogFileError(Reject(name, 0, FILE, "no such file"))
    if path.stat().st_size == 0:
        raise CatalogFileError(Reject(name, 0, FILE, "the file is empty"))
    check_utf8 = False
    if fmt is FileFormat.PARQUET:
        rows = _parquet_rows(path, columns)
    else:
        raw = path.read_bytes()
        check_utf8 = not _is_utf8(raw)  # cells are searched for undecodable bytes only when there are some
        rows = _csv_rows(raw, columns) if fmt is FileFormat.CSV else _jsonl_rows(raw, columns)
    builder = _RowBuilder(columns, text_cells=fmt is FileFormat.CSV, check_utf8=check_utf8)
    result = ImportResult(name, fmt)
    for line, cells in rows:
        result.rows += 1
        broken = cells.get(ROW)
        outcome: CatalogRecord | Reject
        if isinstance(broken, InvalidEventError):
            outcome = Reject(name, line, broken.field, broken.reason)
        else:
            outcome = builder.build(line, cells)
        if isinstance(outcome, Reject):
            result.rejects.append(outcome)
        else:
            result.records.append((line, outcome))
        if progress is not None and result.rows % 1000 == 0:
            progress(1000)
    if progress is not None:
        progress(result.rows % 1000)
    if result.rows == 0:
        raise CatalogFileError(Reject(name, 0, FILE, "the file has no rows"))
    return result

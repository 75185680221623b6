"""Catalog files: every bad file and bad row gets a precise reason (file, line, field); good files parse the
same from CSV, JSON lines and Parquet; mapping, extra columns, duplicates and defaults behave as documented."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamrec.catalog.codec import CatalogKind
from streamrec.catalog.importer import CatalogFileError, ImportOptions, ImportResult, read_catalog_file
from streamrec.catalog.models import CatalogItem, ItemTombstone, UserProfile
from streamrec.errors import InvalidEventError

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HEADER = "item_id,title,category,price,image,available,attributes,updated_at\n"
GOOD_ROW = 'sku-1,Mug,kitchen,9.5,https://cdn.example/1.png,true,"{""color"": ""blue""}",2026-11-30T10:00:00Z\n'


def options(**kw: Any) -> ImportOptions:
    return ImportOptions(kw.pop("kind", CatalogKind.ITEMS), NOW, **kw)


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def load(tmp_path: Path, name: str, content: bytes | str, **kw: Any) -> ImportResult:
    return read_catalog_file(write(tmp_path, name, content), options(**kw))


BAD_FILES: list[tuple[str, str, bytes | str, int, str, str]] = [
    ("empty file", "a.csv", b"", 0, "<file>", "empty"),
    ("header only", "a.csv", HEADER, 0, "<file>", "no rows"),
    ("missing title column", "a.csv", "item_id,category\ni1,k\n", 1, "title", "missing required column"),
    ("missing id column", "a.csv", "title,category\nt,k\n", 1, "item_id", "missing required column"),
    ("unknown column", "a.csv", "item_id,title,category,colour\ni,t,k,red\n", 1, "colour", "--extra-columns"),
    ("duplicate header", "a.csv", "item_id,title,title,category\ni,t,t,k\n", 1, "title", "twice"),
    ("non utf-8 header", "a.csv", b"item_id,t\xeftle,category\n", 1, "<file>", "UTF-8"),
    ("not parquet", "a.parquet", b"PAR1 but not really", 0, "<file>", "Parquet"),
    ("jsonl blank only", "a.jsonl", "\n\n", 0, "<file>", "no rows"),
]


@pytest.mark.parametrize(
    ("case", "name", "content", "line", "field", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_bad_files_are_refused_whole_naming_line_field_and_reason(
    tmp_path: Path, case: str, name: str, content: bytes | str, line: int, field: str, reason: str
) -> None:
    with pytest.raises(CatalogFileError) as info:
        load(tmp_path, name, content)
    reject = info.value.reject
    assert (reject.line, reject.field) == (line, field), reject
    assert reason in reject.reason, reject.reason
    assert reject.file.endswith(name)


BAD_ROWS: list[tuple[str, str, str, str]] = [
    ("price not a number", "sku-1,Mug,kitchen,abc,,,,\n", "price", "not a number: 'abc'"),
    ("negative price", "sku-1,Mug,kitchen,-3,,,,\n", "price", "greater than or equal to 0"),
    ("nan price", "sku-1,Mug,kitchen,NaN,,,,\n", "price", "finite"),
    ("infinite price", "sku-1,Mug,kitchen,inf,,,,\n", "price", "finite"),
    ("decimal comma price", 'sku-1,Mug,kitchen,"9,5",,,,\n', "price", "not a number"),
    ("empty title", "sku-1,,kitchen,,,,,\n", "title", "required"),
    ("bad id", "sku 1,Mug,kitchen,,,,,\n", "item_id", "no spaces"),
    ("bad availability", "sku-1,Mug,kitchen,,,maybe,,\n", "available", "true or false"),
    ("image ftp", "sku-1,Mug,kitchen,,ftp://x/1.png,,,\n", "image", "scheme 'ftp'"),
    ("image with space", "sku-1,Mug,kitchen,,my pic.png,,,\n", "image", "whitespace"),
    ("image url without host", "sku-1,Mug,kitchen,,https:///1.png,,,\n", "image", "host"),
    ("attributes not json", "sku-1,Mug,kitchen,,,,{color: blue},\n", "attributes", "not valid JSON"),
    ("attributes a list", "sku-1,Mug,kitchen,,,,[1],\n", "attributes", "JSON object"),
    ("attributes nested", 'sku-1,Mug,kitchen,,,,"{""a"": {""b"": 1}}",\n', "attributes", "flat map"),
    ("attributes NaN", 'sku-1,Mug,kitchen,,,,"{""a"": NaN}",\n', "attributes", "NaN"),
    ("huge attribute value", 'sku-1,Mug,kitchen,,,,"{""a"": ""' + "x" * 2000 + '""}",\n', "attributes", "1024"),
    (
        "too many attributes",
        '"sku-1",Mug,kitchen,,,,"{' + ",".join(f'""k{n}"": {n}' for n in range(65)) + '}",\n',
        "attributes",
        "limit is 64",
    ),
    ("timestamp garbage", "sku-1,Mug,kitchen,,,,,last tuesday\n", "updated_at", "RFC 3339"),
    ("timestamp without offset", "sku-1,Mug,kitchen,,,,,2026-11-30T10:00:00\n", "updated_at", "offset"),
    ("timestamp in seconds", "sku-1,Mug,kitchen,,,,,1764496800\n", "updated_at", "seconds"),
    ("too few cells", "sku-1,Mug\n", "<row>", "2 cells; the header has 8"),
    ("too many cells", "sku-1,Mug,kitchen,,,,,,extra\n", "<row>", "9 cells"),
    ("non utf-8 cell", "sku-1,Caf\udce9,kitchen,,,,,\n", "title", "not valid UTF-8 (byte 0xE9)"),
]


@pytest.mark.parametrize(("case", "row", "field", "reason"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_rows_are_rejected_with_file_line_field_and_reason(
    tmp_path: Path, case: str, row: str, field: str, reason: str
) -> None:
    content = (HEADER + GOOD_ROW.replace("sku-1", "sku-0") + row).encode("utf-8", errors="surrogateescape")
    result = load(tmp_path, "shop.csv", content)
    assert [line for line, _ in result.records] == [2], "the good row before it is kept"
    assert len(result.rejects) == 1
    reject = result.rejects[0]
    assert (reject.line, reject.field) == (3, field), reject
    assert reason in reject.reason, reject.reason
    assert reject.file.endswith("shop.csv")


def test_a_good_csv_row_becomes_the_typed_record(tmp_path: Path) -> None:
    result = load(tmp_path, "shop.csv", HEADER + GOOD_ROW)
    [(line, record)] = result.records
    assert line == 2 and not result.rejects
    assert record == CatalogItem(
        item_id="sku-1",
        title="Mug",
        category="kitchen",
        price=9.5,
        image="https://cdn.example/1.png",
        available=True,
        attributes={"color": "blue"},
        updated_at=datetime(2026, 11, 30, 10, tzinfo=UTC),
    )


def test_csv_line_numbers_count_physical_lines_of_quoted_multiline_cells(tmp_path: Path) -> None:
    content = 'item_id,title,category,description\na,A,k,"two\nlines"\n\nb,B,k,x\nc,,k,x\n'
    result = load(tmp_path, "m.csv", content)
    assert [line for line, _ in result.records] == [2, 5]
    assert [(r.line, r.field) for r in result.rejects] == [(6, "title")]


def test_duplicate_ids_reject_every_row_after_the_first_naming_it(tmp_path: Path) -> None:
    content = "item_id,title,category\na,First,k\nb,B,k\na,Second,k\na,Third,k\n"
    result = load(tmp_path, "d.csv", content)
    assert [(line, rec.key) for line, rec in result.records] == [(2, "a"), (3, "b")]
    assert [(r.line, r.field) for r in result.rejects] == [(4, "item_id"), (5, "item_id")]
    assert "first at line 2" in result.rejects[0].reason


def test_missing_updated_at_defaults_to_the_import_time(tmp_path: Path) -> None:
    result = load(tmp_path, "n.csv", "item_id,title,category\na,A,k\n")
    [(_, record)] = result.records
    assert isinstance(record, CatalogItem) and record.updated_at == NOW and record.available is True


def test_column_mapping_reads_contract_fields_from_the_shops_own_columns(tmp_path: Path) -> None:
    content = "sku,name,dept,cost\na,Mug,kitchen,3\n"
    mapping = {"item_id": "sku", "title": "name", "category": "dept", "price": "cost"}
    [(_, record)] = load(tmp_path, "m.csv", content, mapping=mapping).records
    assert isinstance(record, CatalogItem) and (record.item_id, record.title, record.category, record.price) == (
        "a",
        "Mug",
        "kitchen",
        3.0,
    )


def test_mapping_to_an_unknown_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidEventError, match="not a field of the items contract"):
        load(tmp_path, "m.csv", "a\n1\n", mapping={"colour": "a"})


def test_extra_columns_can_be_ignored_or_become_attributes(tmp_path: Path) -> None:
    content = 'item_id,title,category,brand,attributes\na,A,k,Acme,"{""size"": 2}"\nb,B,k,,\n'
    ignored = load(tmp_path, "x.csv", content, extra="ignore").records
    assert [rec.attributes for _, rec in ignored] == [{"size": 2}, {}]  # type: ignore[union-attr]
    kept = load(tmp_path, "x.csv", content, extra="attributes").records
    assert [rec.attributes for _, rec in kept] == [{"size": 2, "brand": "Acme"}, {}]  # type: ignore[union-attr]


def test_a_deleted_row_is_a_tombstone_and_false_is_an_upsert(tmp_path: Path) -> None:
    content = "item_id,title,category,deleted,updated_at\na,A,k,false,1764496800000\nb,,,yes,1764496800000\n"
    records = [rec for _, rec in load(tmp_path, "t.csv", content).records]
    assert isinstance(records[0], CatalogItem)
    assert records[1] == ItemTombstone(item_id="b", deleted=True, updated_at=1_764_496_800_000)


def test_jsonl_keeps_json_types_and_rejects_text_where_a_number_belongs(tmp_path: Path) -> None:
    lines = [
        {"item_id": "a", "title": "A", "category": "k", "price": 2, "updated_at": "2026-11-30T10:00:00Z"},
        {"item_id": "b", "title": "B", "category": "k", "price": "2"},
        "not json",
        {"item_id": "c", "title": "C", "category": "k", "colour": "red"},
    ]
    text = "\n".join(item if isinstance(item, str) else json.dumps(item) for item in lines) + "\n"
    text += '{"item_id": "d", "title": "\udcff", "category": "k"}\n'
    result = load(tmp_path, "f.jsonl", text.encode("utf-8", errors="surrogateescape"))
    assert [(line, rec.key) for line, rec in result.records] == [(1, "a")]
    assert [(r.line, r.field) for r in result.rejects] == [
        (2, "price"),
        (3, "<payload>"),
        (4, "colour"),
        (5, "<payload>"),
    ]
    assert "UTF-8" in result.rejects[3].reason


def test_parquet_rows_are_numbered_and_typed(tmp_path: Path) -> None:
    table = pa.table(
        {
            "item_id": ["a", "b", "c"],
            "title": ["A", "B", "C"],
            "category": ["k", "k", "k"],
            "price": [1.5, float("nan"), None],
            "attributes": ['{"size": 2}', None, None],
            "updated_at": pa.array([datetime(2026, 11, 30, tzinfo=UTC)] * 3, pa.timestamp("ms", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "p.parquet")
    result = read_catalog_file(tmp_path / "p.parquet", options())
    assert [(line, rec.key) for line, rec in result.records] == [(1, "a"), (3, "c")]
    assert [(r.line, r.field) for r in result.rejects] == [(2, "price")]
    assert result.records[0][1].attributes == {"size": 2}  # type: ignore[union-attr]


def test_user_profiles_import_from_csv(tmp_path: Path) -> None:
    content = 'user_id,attributes,updated_at\nu1,"{""segment"": ""gold""}",2026-11-30T10:00:00Z\nu 2,,\n'
    result = load(tmp_path, "u.csv", content, kind=CatalogKind.USERS)
    [(_, record)] = result.records
    assert isinstance(record, UserProfile) and record.attributes == {"segment": "gold"}
    assert [(r.line, r.field) for r in result.rejects] == [(3, "user_id")]


def test_the_sample_catalog_in_the_docs_is_valid() -> None:
    sample = Path(__file__).resolve().parents[2] / "docs" / "examples" / "shop_items.csv"
    result = read_catalog_file(sample, options())
    assert not result.rejects, result.rejects[:3]
    assert 30 <= len(result.records) <= 50
    assert len({rec.category for _, rec in result.records}) >= 4  # type: ignore[union-attr]

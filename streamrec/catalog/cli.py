"""``streamrec catalog import FILE|topics|snapshot``: a shop's items and users into Kafka, and into the archive.

Registered like the app folders' commands (``register(registry)``); ``python -m streamrec.catalog.cli``
runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from streamrec.catalog.codec import CatalogKind
from streamrec.catalog.importer import (
    CatalogFileError,
    FileFormat,
    ImportOptions,
    ImportResult,
    Reject,
    check_mapping,
    read_catalog_file,
)
from streamrec.catalog.settings import CatalogSettings
from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.errors import ConfigError, InvalidEventError, StreamrecError
from streamrec.settings import KafkaSettings

REPORT_COLUMNS = ("file", "line", "field", "reason")


class ImportRejectedError(StreamrecError):
    """Rows of the file are invalid; nothing (or, with --skip-invalid, nothing valid) was sent."""


def parse_mapping(pairs: list[str] | None) -> dict[str, str]:
    """``["title=name", "category=dept"]`` -> ``{"title": "name", "category": "dept"}``."""
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        target, sep, column = pair.partition("=")
        if not sep or not target.strip() or not column.strip():
            raise ConfigError(f"expected FIELD=COLUMN, got {pair!r}", source="--map")
        if target.strip() in mapping:
            raise ConfigError(f"field {target.strip()!r} mapped twice", source="--map")
        mapping[target.strip()] = column.strip()
    return mapping


def default_report_path(source: Path) -> Path:
    return Path.cwd() / f"{source.stem}.rejects.csv"


def write_report(path: Path, rejects: list[Reject]) -> Path:
    """Every reject as a CSV row or a JSON line (by the report's suffix): file, line, field, reason."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            for reject in rejects:
                handle.write(json.dumps(asdict(reject), ensure_ascii=False) + "\n")
        else:
            writer = csv.writer(handle)
            writer.writerow(REPORT_COLUMNS)
            for reject in rejects:
                writer.writerow([reject.file, reject.line, reject.field, reject.reason])
    return path


def _validate(args: argparse.Namespace, source: Path, report: Path) -> ImportResult:
    kind = CatalogKind(args.kind)
    mapping = parse_mapping(args.map)
    try:
        check_mapping(kind, mapping)
    except InvalidEventError as exc:
        raise ConfigError(exc.reason, source="--map") from None
    options = ImportOptions(kind, datetime.now(UTC), mapping, args.extra_columns)
    fmt = FileFormat(args.format) if args.format else None
    bar = tqdm(desc=f"validate {source.name}", unit="row", file=sys.stderr, disable=args.no_progress or None)
    try:
        return read_catalog_file(source, options, fmt, progress=bar.update)
    except CatalogFileError as exc:
        write_report(report, [exc.reject])
        raise ImportRejectedError(f"{exc.reject}; nothing sent (report: {report})") from None
    finally:
        bar.close()


def _import(args: argparse.Namespace) -> int:
    source = Path(args.file)
    report = Path(args.report) if args.report else default_report_path(source)
    started = time.monotonic()
    result = _validate(args, source, report)
    if result.rejects:
        write_report(report, result.rejects)
        first = result.rejects[0]
        summary = f"{len(result.rejects)} of {result.rows} rows invalid; first: {first}"
        if not args.skip_invalid:
            raise ImportRejectedError(f"{summary}; nothing sent (report: {report})")
        if not result.records:
            raise ImportRejectedError(f"{summary}; no valid row to send (report: {report})")
        print(f"{summary}; skipping them (rejects: {report})", file=sys.stderr)
    kind = CatalogKind(args.kind)
    catalog = CatalogSettings.load()
    topic = catalog.items_topic if kind is CatalogKind.ITEMS else catalog.users_topic
    if args.dry_run:
        print(f"validated {len(result.records)} {kind.value} records from {source}; not sent (--dry-run)")
        return 0
    sent = send_records(KafkaSettings.load(), catalog, result, args.no_progress)
    elapsed = time.monotonic() - started
    rate = sent / max(elapsed, 1e-9)
    print(
        f"sent {sent} {kind.value} records from {source} to {topic} in {elapsed:.1f}s ({rate:,.0f}/s)"
        + (f"; {len(result.rejects)} invalid rows skipped (rejects: {report})" if result.rejects else "")
    )
    return 0


def send_records(kafka: KafkaSettings, catalog: CatalogSettings, result: ImportResult, no_progress: bool) -> int:
    """Produce the validated records (creating the compacted topics if missing); flush raises on failure."""
    from streamrec.catalog.topics import ensure_catalog_topics
    from streamrec.client.catalog import CatalogProducer

    ensure_catalog_topics(kafka, catalog)
    bar = tqdm(total=len(result.records), desc="send", unit="rec", file=sys.stderr, disable=no_progress or None)
    with CatalogProducer(kafka, catalog) as producer:
        for n, (_line, record) in enumerate(result.records, start=1):
            producer.send(record)
            if n % 1000 == 0:
                bar.update(1000)
        bar.update(len(result.records) % 1000)
    bar.close()
    return len(result.records)


def _topics(args: argparse.Namespace) -> int:
    from streamrec.catalog.topics import ensure_catalog_topics

    catalog = CatalogSettings.load()
    created = ensure_catalog_topics(KafkaSettings.load(), catalog)
    names = [catalog.items_topic, catalog.users_topic, catalog.dlq_topic]
    print(f"created: {', '.join(created)}" if created else f"already there: {', '.join(names)}")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from streamrec.catalog.snapshot import write_snapshot
    from streamrec.client.catalog import read_catalog
    from streamrec.settings import PathsSettings

    kafka, catalog = KafkaSettings.load(), CatalogSettings.load()
    root = Path(args.archive) if args.archive else PathsSettings.load().archive_root
    items, rejected_items = read_catalog(kafka, catalog, CatalogKind.ITEMS, args.timeout)
    users, rejected_users = read_catalog(kafka, catalog, CatalogKind.USERS, args.timeout)
    ref = write_snapshot(root, items, users)
    rejected = rejected_items + rejected_users
    print(
        f"wrote catalog snapshot {ref.path}: {len(items.live())} items ({len(items.tombstones())} deleted), "
        f"{len(users.live())} users ({len(users.tombstones())} deleted)"
        + (f"; {rejected} invalid records left out (the catalog sync dead-letters them)" if rejected else "")
    )
    return 0


def setup_catalog(parser: argparse.ArgumentParser) -> CommandHandler:
    subs = parser.add_subparsers(dest="catalog_command", metavar="ACTION", parser_class=type(parser))
    subs.required = True
    imp = subs.add_parser("import", help="validate a CSV / JSON-lines / Parquet file and produce it to Kafka")
    imp.add_argument("file", help="the file (format from its suffix: .csv, .jsonl/.ndjson/.json, .parquet)")
    imp.add_argument("--kind", choices=[k.value for k in CatalogKind], default="items", help="items (default) or users")
    imp.add_argument("--format", choices=[f.value for f in FileFormat], help="override the format the suffix implies")
    imp.add_argument(
        "--map", action="append", metavar="FIELD=COLUMN", help="read contract FIELD from file COLUMN (repeatable)"
    )
    imp.add_argument(
        "--extra-columns",
        choices=["error", "ignore", "attributes"],
        default="error",
        help="columns that are no contract field: refuse the file (default), ignore them, or add them to attributes",
    )
    imp.add_argument("--skip-invalid", action="store_true", help="send the valid rows; write the rejects to --report")
    imp.add_argument("--report", metavar="PATH", help="reject report, .csv or .jsonl (default: ./<stem>.rejects.csv)")
    imp.add_argument("--dry-run", action="store_true", help="validate only; send nothing")
    imp.add_argument("--no-progress", action="store_true", help="no progress bars")
    imp.set_defaults(_catalog_handler=_import)
    topics = subs.add_parser("topics", help="create the compacted items / users topics and the catalog DLQ")
    topics.set_defaults(_catalog_handler=_topics)
    snap = subs.add_parser("snapshot", help="read the catalog topics and write a versioned snapshot to the archive")
    snap.add_argument("--archive", metavar="DIR", help="archive root (default: STREAMREC_PATHS_ARCHIVE_ROOT)")
    snap.add_argument("--timeout", type=float, default=120.0, help="give up reading a topic after S seconds")
    snap.set_defaults(_catalog_handler=_snapshot)

    def dispatch(args: argparse.Namespace) -> int:
        return int(args._catalog_handler(args))

    return dispatch


def register(registry: PluginRegistry) -> None:
    registry.add_settings(CatalogSettings)
    registry.add_command(
        "catalog", "the item and user catalog: import files, create the topics, write snapshots", setup_catalog
    )


def main(argv: list[str] | None = None) -> int:
    from streamrec.cli.main import PROG, build_parser

    registry = PluginRegistry()
    register(registry)
    args = build_parser(registry).parse_args(["catalog", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args._handler(args))
    except StreamrecError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""``catalog import`` throughput: a generated CSV validated and produced to Kafka, items per second.

    .venv/bin/python bench/catalog_import.py [--rows 100000] [--repeats 3]

Needs a broker: the local stack (``streamrec stack up --no-triton``), ``KAFKA_BOOTSTRAP_SERVERS``, or
``--own-broker PORT``: a local KRaft broker of its own on PORT and PORT+1, in a temporary run directory,
stopped at the end. Each repeat writes the rows to fresh
compacted topics (deleted afterwards) through the same code the command runs: ``read_catalog_file``
(parse + validate every row) then ``send_records`` (CatalogProducer, idempotent, acks=all, flushed).
Target: >= 5,000 items/s validated and produced. Prints one JSON line per repeat and a summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from streamrec.catalog.cli import send_records
from streamrec.catalog.codec import CatalogKind
from streamrec.catalog.importer import ImportOptions, read_catalog_file
from streamrec.catalog.settings import CatalogSettings
from streamrec.client.admin import delete_topics
from streamrec.settings import KafkaSettings

TARGET_ITEMS_PER_S = 5_000
CATEGORIES = ["kitchen", "coffee", "textiles", "stationery", "garden", "lighting", "gifts", "toys", "books", "tools"]
WORDS = [
    "stoneware",
    "walnut",
    "linen",
    "brass",
    "merino",
    "ceramic",
    "cast",
    "iron",
    "oak",
    "paper",
    "beeswax",
    "copper",
    "glass",
    "wool",
    "cotton",
]


def generate_csv(path: Path, rows: int, seed: int = 7) -> int:
    """A shop-like catalog: every contract column, attributes as JSON, a realistic mix of lengths."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "description", "category", "price", "image", "available", "attributes"])
        for n in range(rows):
            words = rng.sample(WORDS, 3)
            attributes = {"color": rng.choice(WORDS), "size_cm": rng.randint(5, 90), "handmade": rng.random() < 0.3}
            writer.writerow(
                [
                    f"sku-{n:07d}",
                    f"{words[0].title()} {words[1]} {rng.choice(CATEGORIES)} item {n}",
                    " ".join(rng.choices(WORDS, k=rng.randint(8, 30))) + ".",
                    rng.choice(CATEGORIES),
                    f"{rng.uniform(1, 500):.2f}",
                    f"https://shop.example.com/img/sku-{n:07d}.jpg",
                    "true" if rng.random() < 0.95 else "false",
                    json.dumps(attributes),
                ]
            )
    return path.stat().st_size


def one_run(kafka: KafkaSettings, source: Path, rows: int) -> dict[str, float]:
    run_id = uuid.uuid4().hex[:8]
    catalog = CatalogSettings.load(
        items_topic=f"bench.items.{run_id}", users_topic=f"bench.users.{run_id}", dlq_topic=f"bench.cdlq.{run_id}"
    )
    options = ImportOptions(CatalogKind.ITEMS, datetime.now(UTC))
    try:
        start = time.perf_counter()
        result = read_catalog_file(source, options)
        validated = time.perf_counter()
        if result.rejects or len(result.records) != rows:
            raise SystemExit(f"generated file has {len(result.rejects)} rejects: {result.rejects[:2]}")
        sent = send_records(kafka, catalog, result, no_progress=True)
        done = time.perf_counter()
    finally:
        delete_topics(kafka, [catalog.items_topic, catalog.users_topic, catalog.dlq_topic])
    return {
        "rows": float(sent),
        "validate_s": validated - start,
        "produce_s": done - validated,
        "total_s": done - start,
        "validate_per_s": rows / (validated - start),
        "produce_per_s": rows / (done - validated),
        "items_per_s": rows / (done - start),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--own-broker", type=int, metavar="PORT", help="start a broker of its own on PORT")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.own_broker is None:
            return measure(KafkaSettings.load(), args.rows, args.repeats, Path(tmp))
        from streamrec.settings import StackSettings
        from streamrec.stack.kafka import KafkaComponent

        kafka = KafkaSettings.load(local_port=args.own_broker, local_controller_port=args.own_broker + 1)
        broker = KafkaComponent(Path(tmp) / "run", StackSettings.load(), kafka)
        broker.start(180.0, lambda _: None)
        try:
            return measure(kafka, args.rows, args.repeats, Path(tmp))
        finally:
            broker.stop()


def measure(kafka: KafkaSettings, rows: int, repeats: int, tmp: Path) -> int:
    source = tmp / "catalog.csv"
    size = generate_csv(source, rows)
    runs = []
    for repeat in range(repeats):
        run = one_run(kafka, source, rows)
        runs.append(run)
        print(json.dumps({"repeat": repeat, **{k: round(v, 3) for k, v in run.items()}}), flush=True)
    median = statistics.median(r["items_per_s"] for r in runs)
    summary = {
        "rows": rows,
        "csv_mib": round(size / 2**20, 1),
        "median_items_per_s": round(median),
        "median_validate_per_s": round(statistics.median(r["validate_per_s"] for r in runs)),
        "median_produce_per_s": round(statistics.median(r["produce_per_s"] for r in runs)),
        "target_items_per_s": TARGET_ITEMS_PER_S,
        "target_met": median >= TARGET_ITEMS_PER_S,
        "broker": kafka.bootstrap,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

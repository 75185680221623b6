"""The API's latency with and without a stream of catalog updates, side by side in one run.

Against a running system (``streamrec demo``: API, Triton, worker, catalog sync on one machine), phases
alternate: open-loop API load alone, then the same load while catalog updates stream in through the SDK at a
fixed rate (by default every fifth a new item, which the sync embeds and every serving process adds; the others new
prices of the export's items). The API load is ``bench/serving_load.py`` (no coordinated omission). Afterwards
the new items are deleted and the prices restored, so the catalog is as before but for those tombstones.

    .venv/bin/python bench/api_catalog_updates.py --api-url http://127.0.0.1:8080 --api-key demo-key \\
        --catalog .streamrec/data/ml-100k --rate 200 --updates-per-s 50 --duration 30 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from streamrec.catalog.settings import CatalogSettings
from streamrec.client.catalog import CatalogProducer
from streamrec.settings import KafkaSettings

HERE = Path(__file__).resolve().parent


def api_load(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable, str(HERE / "serving_load.py"), "--target", "api", "--url", args.api_url,
        "--api-key", args.api_key, "--export-root", args.export_root, "--mode", "open",
        "--rate", str(args.rate), "--duration", str(args.duration), "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


class Updates(threading.Thread):
    """Catalog upserts at a fixed rate until stopped; remembers what to undo."""

    def __init__(
        self, producer: CatalogProducer, rows: list[dict[str, Any]], rate: float, tag: str, new_every: int
    ) -> None:
        super().__init__(daemon=True)
        self.producer, self.rows, self.rate, self.tag, self.new_every = producer, rows, rate, tag, new_every
        self.stop = threading.Event()
        self.sent = 0
        self.new_items: list[str] = []

    def run(self) -> None:
        began = time.monotonic()
        while not self.stop.is_set():
            row = self.rows[self.sent % len(self.rows)]
            record = {"title": row["text"][:200], "category": row["category"], "updated_at": int(time.time() * 1000)}
            if self.new_every and self.sent % self.new_every == 0:
                item_id = f"{self.tag}-new-{self.sent}"
                self.new_items.append(item_id)
                self.producer.upsert_item({**record, "item_id": item_id, "price": row["price"]})
            else:
                self.producer.upsert_item({**record, "item_id": row["item_id"], "price": row["price"] + 0.5})
            self.sent += 1
            delay = began + self.sent / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def undo(self) -> None:
        now = int(time.time() * 1000)
        for item_id in self.new_items:
            self.producer.delete_item(item_id, updated_at=now)
        for row in self.rows[: min(self.sent, len(self.rows))]:
            record = {"item_id": row["item_id"], "title": row["text"][:200], "category": row["category"]}
            self.producer.upsert_item({**record, "price": row["price"], "updated_at": now})
        self.producer.flush()


def summary(phase: str, result: dict[str, Any], extra: str = "") -> dict[str, Any]:
    lat = result["latency_ms"]
    row = {
        "phase": phase, "p50": lat["p50"], "p99": lat["p99"], "rps": result["throughput_rps"],
        "failures_or_fallbacks": result["failures_or_fallbacks"], "extra": extra,
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--export-root", default=".streamrec/exports")
    parser.add_argument("--catalog", required=True, help="folder with the items.parquet the export was trained on")
    parser.add_argument("--rate", type=float, default=200.0, help="API requests per second")
    parser.add_argument("--updates-per-s", type=float, default=50.0)
    parser.add_argument("--new-item-every", type=int, default=5, help="every n-th update is a new item (0: none)")
    parser.add_argument("--duration", type=int, default=30, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of phases (alone, with updates)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/api-catalog-updates"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = pq.read_table(Path(args.catalog) / "items.parquet", columns=["item_id", "category", "price", "text"])
    items = rows.to_pylist()
    print(f"load average before: {os.getloadavg()}", flush=True)
    results = []
    with CatalogProducer(KafkaSettings.load(), CatalogSettings.load()) as producer:
        for n in range(args.rounds):
            results.append(summary("alone", api_load(args, args.out / f"alone-{n}.json")))
            updates = Updates(producer, items, args.updates_per_s, f"bench-{uuid.uuid4().hex[:6]}", args.new_item_every)
            updates.start()
            result = api_load(args, args.out / f"updates-{n}.json")
            updates.stop.set()
            updates.join()
            rate = updates.sent / args.duration
            results.append(summary("with updates", result, f"{updates.sent} updates ({rate:.1f}/s)"))
            updates.undo()
    print(f"load average after: {os.getloadavg()}", flush=True)
    alone = [r["p99"] for r in results if r["phase"] == "alone"]
    loaded = [r["p99"] for r in results if r["phase"] == "with updates"]
    ratio = (sum(loaded) / len(loaded)) / (sum(alone) / len(alone))
    print(json.dumps({"p99_alone": alone, "p99_with_updates": loaded, "ratio_of_means": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

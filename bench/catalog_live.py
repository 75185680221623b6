"""The live catalog's delays: a catalog record -> its live entry published (and, given an API, -> in its answers).

    .venv/bin/python bench/catalog_live.py [--own-stack PORT] [--export-root DIR]
        [--replay-items 2000] [--replay-known 100000] [--rate 50] [--duration 60]
        [--api-url URL --api-key KEY --api-users u1,u2 --api-catalog DIR]

Needs Kafka and Redis: the local stack (``streamrec stack up --no-triton``), ``KAFKA_BOOTSTRAP_SERVERS`` /
``REDIS_URL``, or ``--own-stack PORT`` (Kafka on PORT and PORT+1, Valkey on PORT+2, in a temporary run
directory, stopped at the end). Without ``--export-root`` a tiny export is trained first (the trainer's own
code). The catalog sync runs in this process on its real adapters (Kafka, Redis, a throwaway Feast repository
with the project's views), on fresh topics and keys, deleted at the end.

1. **Replay**: ``--replay-items`` items the export does not know (each embedded from its content) and
   ``--replay-known`` records of the export's own items are produced, then a sync starts and replays them; a
   second sync replays them again (a restart: vectors reused, nothing published again).
2. **Live**: with a sync running, ``--rate`` records/s for ``--duration`` s, in turn: a new item, a new title
   for an item added before (both embedded), ``available: false``, a delete. A reader
   (``LiveCatalogReader``, as every serving process uses) measures each record's ``updated_at`` -> its entry read.
3. **Through the API** (``--api-url``): a new item copying the content (from ``--api-catalog``, a folder with
   the ``items.parquet`` the export was trained on) of the item a user is recommended first, produced together
   with ``--api-distractors`` new items copying random other items of that catalog, and the time until the
   copy is in that user's top ``--api-k`` (a distractor shown to the user meanwhile is counted); then the
   deletes, and the time until the copy is gone from every answer; ``available: false`` on a user's top item
   and the time until it is gone from every answer (made available again after). A copy missing from its
   user's top k for 15 s is counted as missed (a ranking matter: its entry is published all the same). Needs
   a serving deployment following the live catalog of the export under ``--export-root`` (and the sync here
   must write where it reads: same Redis, default prefix: pass ``--live-prefix streamrec``).

Prints one JSON line per phase and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from consumers.catalog_sync import CatalogSync
from consumers.catalog_wiring import build_catalog_sync
from consumers.settings import ConsumersSettings
from streamrec import artifacts as art
from streamrec.catalog.live import LiveCatalogReader, LiveKeys
from streamrec.catalog.models import MAX_TITLE_CHARS
from streamrec.catalog.settings import CatalogSettings
from streamrec.client.admin import TopicSpec, delete_topics, ensure_topics
from streamrec.client.catalog import CatalogProducer
from streamrec.settings import KafkaSettings, RedisSettings

REPO = Path(__file__).resolve().parents[1]
WORDS = ["linen", "walnut", "merino", "brass", "ceramic", "oak", "copper", "glass", "wool", "cotton", "stoneware"]
KINDS = ["lamp", "scarf", "mug", "chair", "kettle", "blanket", "vase", "notebook", "bowl", "shoe"]
TARGET_APPEAR_P99_S = 5.0
TARGET_GONE_P99_S = 1.0
DRAIN_S = 15.0
SETTLE_S = 2.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_of(values: list[float]) -> dict[str, Any]:
    p50, p99 = pct(values, 0.5), pct(values, 0.99)
    return {
        "n": len(values),
        "p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
        "p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
        "max_ms": round(max(values) * 1000, 1) if values else None,
    }


def new_item(item_id: str, rng: random.Random, categories: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "title": f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} {rng.choice(KINDS)} {rng.randint(1, 9999)}",
        "description": f"{rng.choice(WORDS)} and {rng.choice(WORDS)}, made to last.",
        "category": rng.choice(categories),
        "price": round(rng.uniform(2, 200), 2),
        "updated_at": datetime.now(UTC),
        **fields,
    }


def train_tiny_export(tmp: Path) -> Path:
    from trainer.data import synthetic
    from trainer.settings import TrainerSettings
    from trainer.train.full import run_full

    config = synthetic.SyntheticConfig.preset("tiny", seed=11).with_sizes(users=300, items=120, events=4_000, days=4)
    synthetic.prepare(tmp / "data", config)
    settings = TrainerSettings(
        device="cpu", progress=False, retrieval_epochs=1, ranker_epochs=1, embedding_dim=32, id_dim=32, text_dim=16,
        image_dim=0, cache_dir=tmp / "cache", checkpoint_dir=tmp / "ck",
    )  # fmt: skip
    run_full(tmp / "data", tmp / "exports", settings)
    return tmp / "exports"


def feast_store(tmp: Path, redis_url: str) -> Any:
    import importlib.util

    from feast import FeatureStore

    from streamrec.feast_config import write_minimal_repo_config

    repo = tmp / "feast"
    write_minimal_repo_config(repo, f"bench_{uuid.uuid4().hex[:8]}", redis_url)
    spec = importlib.util.spec_from_file_location("bench_feature_definitions", REPO / "feature_repo" / "definitions.py")
    if spec is None or spec.loader is None:
        raise SystemExit("cannot load feature_repo/definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = FeatureStore(repo_path=str(repo))
    store.apply(module.build_objects(repo / "archive", repo / "offline", ["profile_segment"]))
    return store


def follow(sync: CatalogSync) -> tuple[threading.Event, threading.Thread]:
    """Run the sync in a thread until the event is set."""
    stop = threading.Event()
    runner = threading.Thread(target=sync.run, args=(stop.is_set,), daemon=True)
    runner.start()
    return stop, runner


class Bench:
    def __init__(self, kafka: KafkaSettings, redis_settings: RedisSettings, export_root: Path, tmp: Path,
                 prefix: str | None) -> None:  # fmt: skip
        self.kafka, self.redis_settings, self.export_root = kafka, redis_settings, export_root
        run = uuid.uuid4().hex[:8]
        self.catalog = CatalogSettings(
            items_topic=f"bench.items.{run}", users_topic=f"bench.users.{run}", dlq_topic=f"bench.cdlq.{run}"
        )
        topics = [self.catalog.items_topic, self.catalog.users_topic, self.catalog.dlq_topic]
        ensure_topics(kafka, [TopicSpec(t, 6 if n < 2 else 1) for n, t in enumerate(topics)])
        self.prefix = prefix or f"bench-{run}"
        self.own_prefix = prefix is None
        self.client = redis.Redis.from_url(redis_settings.effective_url, **redis_settings.client_kwargs())
        self.feast = feast_store(tmp, redis_settings.effective_url)
        self.export_dir = art.current_dir(export_root)
        self.categories = art.load_id_maps(self.export_dir).categories[1:]
        self.rng = random.Random(7)

    @property
    def keys(self) -> LiveKeys:
        return LiveKeys.for_version(self.export_dir.name, self.prefix)

    def sync(self) -> tuple[CatalogSync, float]:
        began = time.monotonic()
        sync = build_catalog_sync(
            self.export_root, ConsumersSettings(catalog_sync_metrics_port=0), kafka=self.kafka,
            redis_settings=self.redis_settings, catalog=self.catalog, feast_store=self.feast, live_prefix=self.prefix,
        )  # fmt: skip
        sync.check_export(force=True)
        return sync, time.monotonic() - began

    def replay(self, items: int, known_records: int) -> dict[str, Any]:
        known = art.load_id_maps(self.export_dir).item_ids
        with CatalogProducer(self.kafka, self.catalog) as producer:
            for n in range(items):
                producer.upsert_item(new_item(f"replay-{n}", self.rng, self.categories))
            # Versions of the export's own items: read, validated and reduced, published without embedding.
            for n in range(known_records):
                producer.upsert_item(new_item(known[n % len(known)], self.rng, self.categories, available=n % 3 > 0))
        total = items + known_records
        out: dict[str, Any] = {"phase": "replay", "new_items": items, "known_item_records": known_records}
        for run in ("first", "restart"):
            sync, setup_s = self.sync()
            began = time.monotonic()
            while not (sync.feed.caught_up() and not sync.pending):
                sync.step()
            took = time.monotonic() - began
            sync.feed.close()
            embed_s = float(sync.metrics.embed_seconds._sum.get())
            out[run] = {
                "setup_s": round(setup_s, 1),  # models loaded, dead letters read, Redis state loaded
                "replay_s": round(took, 1),
                "records_per_s": round(total / took),
                "embedded": sync.stats.embedded,
                "embed_s": round(embed_s, 1),
                "embed_items_per_s": round(sync.stats.embedded / embed_s) if sync.stats.embedded else None,
                "published": sync.stats.published,
            }
        return out

    def live(self, rate: float, duration_s: float) -> dict[str, Any]:
        sync, _ = self.sync()
        while not (sync.feed.caught_up() and not sync.pending):
            sync.step()
        stop, runner = follow(sync)
        reader = LiveCatalogReader(self.client, self.keys)
        reader.bootstrap()
        sent: dict[tuple[str, int], str] = {}
        lags: dict[str, list[float]] = {"new": [], "retitled": [], "unavailable": [], "deleted": []}
        lock = threading.Lock()

        def produce() -> None:
            # Changes of an item come at least SETTLE_S apart, so each record can be seen before the next
            # supersedes it (the sync and the readers keep only an item's latest entry).
            added: list[tuple[str, float]] = []
            with CatalogProducer(self.kafka, self.catalog) as producer:
                n, start = 0, time.monotonic()
                while time.monotonic() - start < duration_s:
                    settled = bool(added) and time.monotonic() - added[0][1] >= SETTLE_S
                    kind = ("new", "retitled", "unavailable", "deleted")[n % 4] if settled else "new"
                    if kind == "new":
                        record: Any = producer.upsert_item(new_item(f"live-{n}", self.rng, self.categories))
                        added.append((record.item_id, time.monotonic()))
                    elif kind == "retitled":
                        item_id, _ = added.pop(0)
                        record = producer.upsert_item(new_item(item_id, self.rng, self.categories))
                        added.append((item_id, time.monotonic()))
                    elif kind == "unavailable":
                        item_id, _ = added.pop(0)
                        record = producer.upsert_item(new_item(item_id, self.rng, self.categories, available=False))
                    else:
                        record = producer.delete_item(added.pop(0)[0])
                    with lock:
                        sent[(record.item_id, record.updated_ms)] = kind
                    producer.flush()
                    n += 1
                    time.sleep(max(0.0, start + n / rate - time.monotonic()))

        producer_thread = threading.Thread(target=produce, daemon=True)
        producer_thread.start()
        seen = 0
        drain_until = None
        while True:
            for entry in reader.poll(block_ms=20):
                with lock:
                    kind = sent.get((entry.item_id, entry.updated_ms))
                if kind is not None:
                    lags[kind].append(time.time() - entry.updated_ms / 1000)
                    seen += 1
            if not producer_thread.is_alive():
                drain_until = drain_until or time.monotonic() + DRAIN_S
                if seen >= len(sent) or time.monotonic() > drain_until:
                    break
        stop.set()
        runner.join(30)
        every = sum(lags.values(), [])
        return {
            "phase": "live", "rate_per_s": rate, "duration_s": duration_s, "sent": len(sent), "seen": seen,
            "record_to_live_entry": summary_of(every), **{kind: summary_of(values) for kind, values in lags.items()},
        }  # fmt: skip

    def through_api(self, url: str, key: str, header: str, users: list[str], k: int, trials: int,
                    catalog_dir: Path | None, distractors: int = 0) -> dict[str, Any]:  # fmt: skip
        """New item -> in the matching user's answer; ``available: false`` -> gone from every user's answer."""
        from streamrec.archive import read_items

        content: dict[str, dict[str, Any]] = {}
        if catalog_dir is not None:
            frame = read_items(catalog_dir)
            for row in frame[["item_id", "category", "text", "price"]].itertuples(index=False):
                title = str(row.text or row.item_id)[:MAX_TITLE_CHARS]
                content[str(row.item_id)] = {"title": title, "category": str(row.category or "unknown")}
                if row.price == row.price:  # not NaN
                    content[str(row.item_id)]["price"] = float(row.price)
        known = sorted(content)

        def distractor(item_id: str, unlike: str) -> dict[str, Any]:
            """A new item like the catalog's own (another item's content, price included), else random."""
            if not known:
                return new_item(item_id, self.rng, self.categories)
            other = self.rng.choice([i for i in known if i != unlike] or known)
            return {"item_id": item_id, **content[other], "updated_at": datetime.now(UTC)}

        def answer(user: str) -> list[str]:
            query = urllib.parse.urlencode({"user_id": user, "k": k})
            request = urllib.request.Request(f"{url.rstrip('/')}/v1/recommendations?{query}", headers={header: key})
            with urllib.request.urlopen(request, timeout=5) as response:
                return [it["item_id"] for it in json.load(response)["items"]]

        def wait(done: Callable[[], bool], timeout_s: float = 15.0) -> float | None:
            began = time.monotonic()
            while time.monotonic() - began < timeout_s:
                if done():
                    return time.monotonic() - began
                time.sleep(0.02)
            return None

        sync, _ = self.sync()
        stop, runner = follow(sync)
        appear: list[float] = []
        gone: list[float] = []
        missed_appear = missed_gone = distracted = 0
        with CatalogProducer(self.kafka, self.catalog) as producer:
            for trial in range(trials):
                # A new item with the content of a user's top item, among others of random content: in that
                # user's top k?
                user = users[trial % len(users)]
                top = answer(user)[0]
                like = content.get(top, {"title": top, "category": self.categories[0]})
                new_id = f"api-new-{uuid.uuid4().hex[:8]}"
                others = [f"api-other-{uuid.uuid4().hex[:8]}" for _ in range(distractors)]
                producer.upsert_item({"item_id": new_id, **like, "updated_at": datetime.now(UTC)})
                for other in others:
                    producer.upsert_item(distractor(other, unlike=top))
                producer.flush()
                shown_others: set[str] = set()

                def shown(user: str = user, new_id: str = new_id, others: list[str] = others,
                          shown_others: set[str] = shown_others) -> bool:  # fmt: skip
                    items = answer(user)
                    shown_others.update(set(others) & set(items))
                    return new_id in items

                took = wait(shown)
                distracted += bool(shown_others)
                for other in others:
                    producer.delete_item(other)
                if took is None:
                    missed_appear += 1
                else:
                    appear.append(took)
                    # ... and deleted again: gone from every answer (the bench leaves no item behind).
                    producer.delete_item(new_id)
                    producer.flush()
                    took = wait(lambda n=new_id: all(n not in answer(u) for u in users))  # type: ignore[misc]
                    gone.append(took) if took is not None else None
                    missed_gone += took is None
                if took is None:
                    producer.delete_item(new_id)
                # A recommended item of the export made unavailable: gone from every answer; then available again.
                victim = answer(users[trial % len(users)])[0]
                base = {"item_id": victim, **content.get(victim, {"title": victim, "category": self.categories[0]})}
                producer.upsert_item({**base, "available": False, "updated_at": datetime.now(UTC)})
                producer.flush()
                took = wait(lambda v=victim: all(v not in answer(u) for u in users))  # type: ignore[misc]
                if took is None:
                    missed_gone += 1
                else:
                    gone.append(took)
                producer.upsert_item({**base, "available": True, "updated_at": datetime.now(UTC)})
                producer.flush()
        stop.set()
        runner.join(30)
        return {
            "phase": "api", "url": url, "users": len(users), "k": k,
            "distractors": distractors,
            "appears_in_matching_answer": {
                **summary_of(appear), "missed": missed_appear, "trials_a_distractor_was_shown": distracted,
                "target_p99_s": TARGET_APPEAR_P99_S,
            },
            "gone_from_every_answer": {**summary_of(gone), "missed": missed_gone, "target_p99_s": TARGET_GONE_P99_S},
        }  # fmt: skip

    def close(self) -> None:
        delete_topics(self.kafka, [self.catalog.items_topic, self.catalog.users_topic, self.catalog.dlq_topic])
        if self.own_prefix:
            for key in self.client.scan_iter(f"{self.prefix}:*"):
                self.client.delete(key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--own-stack", type=int, metavar="PORT", help="start Kafka and Valkey of its own")
    parser.add_argument("--export-root", type=Path, help="exports (default: train a tiny one)")
    parser.add_argument("--replay-items", type=int, default=2_000, help="new items (each embedded)")
    parser.add_argument("--replay-known", type=int, default=100_000, help="records of the export's own items")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--live-prefix", help="live catalog key prefix (default: a fresh one, deleted after)")
    parser.add_argument("--api-url")
    parser.add_argument("--api-key", default=os.environ.get("STREAMREC_BENCH_API_KEY", ""))
    parser.add_argument("--api-key-header", default="X-API-Key")
    parser.add_argument("--api-users", default="", help="comma-separated user ids")
    parser.add_argument("--api-catalog", type=Path, help="folder with the items.parquet the export was trained on")
    parser.add_argument("--api-k", type=int, default=20)
    parser.add_argument("--api-trials", type=int, default=20)
    parser.add_argument("--api-distractors", type=int, default=3, help="random new items beside each copy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stack = None
        if args.own_stack:
            os.environ.update({
                "STREAMREC_STACK_RUN_DIR": str(tmp / "run"),
                "STREAMREC_KAFKA_LOCAL_PORT": str(args.own_stack),
                "STREAMREC_KAFKA_LOCAL_CONTROLLER_PORT": str(args.own_stack + 1),
                "STREAMREC_REDIS_LOCAL_PORT": str(args.own_stack + 2),
            })  # fmt: skip
            from streamrec.settings import StackSettings, TritonSettings
            from streamrec.stack import LocalStack

            stack = LocalStack(StackSettings.load(), KafkaSettings.load(), RedisSettings.load(), TritonSettings.load())
            stack.up(with_triton=False)
        try:
            export_root = args.export_root or train_tiny_export(tmp / "export")
            bench = Bench(KafkaSettings.load(), RedisSettings.load(), export_root, tmp, args.live_prefix)
            try:
                if args.replay_items or args.replay_known:
                    print(json.dumps(bench.replay(args.replay_items, args.replay_known)), flush=True)
                if args.duration:
                    print(json.dumps(bench.live(args.rate, args.duration)), flush=True)
                if args.api_url:
                    users = [u for u in args.api_users.split(",") if u]
                    result = bench.through_api(args.api_url, args.api_key, args.api_key_header, users, args.api_k,
                                               args.api_trials, args.api_catalog, args.api_distractors)  # fmt: skip
                    print(json.dumps(result), flush=True)
            finally:
                bench.close()
        finally:
            if stack is not None:
                stack.down()
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "export": str(args.export_root or "tiny, trained by the bench"),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

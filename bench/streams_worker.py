"""Benchmark of the streaming worker on the local stack (``streamrec stack up`` first). Not a test.

Phases (each on fresh topics, with its own ``streamrec worker`` subprocess, one worker, Kafka and Valkey on
the same machine):

* ``throughput``: N synthetic-dataset events are produced first; a raw confluent-kafka consume loop reads
  them (the ceiling), then the worker processes them. Reported: events/s of both, their ratio, and the
  worker's peak RSS. The worker's rate is measured from its first processed event to the moment every
  offset (interactions and by-item) is committed -- i.e. Bloom writes and Feast pushes done.
* ``freshness``: a background load at ``--rate`` events/s; probe events (a new user each) are timed from
  just before ``produce()`` to visible in the user's Bloom filter and to the user's Feast online row.
* ``recs``: events at ``--recs-rate``/s, each from a user idle for > 2 s (so no debounce); timed from
  just before ``produce()`` to the recommendation message carrying it as ``trigger_event_id`` being read.
* ``bloom``: MEMORY USAGE of one user's filter at the default capacity/error rate, both backends.
* ``scaleout``: ``streamrec worker --workers N`` for N = 1, 2, 3 (``--scaleout-workers``), each on a fresh
  6-partition topic holding ``--scaleout-events`` pre-produced events. The workers start one after another
  (the supervisor starts the first alone), so the later ones join a group that is already processing: the
  run includes the rebalances a scale-out under backlog goes through. Reported: total and per-worker
  events/s from the first processed event to every offset committed, the same after the group settled
  (every worker owning partitions), and the rebalance pause -- the longest stretch in which no worker
  processed an event although the backlog was not empty.

Usage: .venv/bin/python bench/streams_worker.py [--phases throughput,freshness,recs,bloom,scaleout] [--events N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, Producer

from streamrec.archive import read_interactions
from streamrec.bloom import SeenItemStore
from streamrec.cli.events_cmd import archive_messages, retime
from streamrec.client.admin import TopicSpec, delete_topics, ensure_topics, existing_topics
from streamrec.client.producer import producer_config
from streamrec.features import FEAST_USER_ENTITY_KEY, FEAST_USER_STREAM_VIEW
from streamrec.schemas.codec import decode_recommendation
from streamrec.schemas.events import InteractionEvent
from streamrec.settings import BloomSettings, KafkaSettings, PathsSettings, RedisSettings

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 6
WARMUP_S = 5.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Worker:
    def __init__(self, tag: str, kafka: KafkaSettings, extra: dict[str, str] | None = None, workers: int = 1) -> None:
        self.kafka = kafka
        self.tag = tag
        self.topics = {k: f"bench.{k}.{tag}" for k in ("in", "recs", "dlq")}
        ensure_topics(
            kafka,
            [
                TopicSpec(self.topics["in"], PARTITIONS),
                TopicSpec(self.topics["recs"], PARTITIONS),
                TopicSpec(self.topics["dlq"], 1),
            ],
        )
        self.port = free_port()
        self.workers = workers
        self.app_id = f"bench-{tag}"
        self.env = {
            **os.environ,
            "STREAMREC_STREAMS_APP_ID": self.app_id,
            "STREAMREC_STREAMS_INTERACTIONS_TOPIC": self.topics["in"],
            "STREAMREC_STREAMS_RECOMMENDATIONS_TOPIC": self.topics["recs"],
            "STREAMREC_STREAMS_DLQ_TOPIC": self.topics["dlq"],
            "STREAMREC_STREAMS_WEB_PORT": str(self.port),
            "STREAMREC_STREAMS_CATALOG_PATH": str(PathsSettings.load().dataset_root("synthetic") / "items.parquet"),
            "STREAMREC_FEAST_PROJECT": f"bench{tag}",
            "STREAMREC_FEAST_REGISTRY": f"/tmp/streamrec-bench/{tag}/registry.db",
            "STREAMREC_STREAMS_RECS_SOURCE": "popularity",
            **(extra or {}),
        }
        self.log = open(f"/tmp/streamrec-bench-{tag}.log", "wb")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli.main", "worker", "--workers", str(self.workers)],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def metrics(self, index: int = 0) -> dict[str, float]:
        raw = urllib.request.urlopen(f"http://127.0.0.1:{self.port + index}/metrics", timeout=2).read().decode()
        out = {}
        for line in raw.splitlines():
            if line.startswith("streamrec_worker_"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                lags = [k for k in self.metrics() if k.startswith("streamrec_worker_consumer_lag{")]
                if len(lags) == 2 * PARTITIONS:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"worker {self.tag} not ready; see {self.log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        internal = [t for t in existing_topics(self.kafka) if t.startswith(self.app_id + "-")]
        delete_topics(self.kafka, [*self.topics.values(), *internal])


def synthetic_messages(n: int) -> list[tuple[bytes, bytes]]:
    frame = read_interactions(PathsSettings.load().dataset_root("synthetic")).iloc[:n]
    frame = retime(frame, None, datetime.now(UTC))
    return [(k, v) for k, v, _ in archive_messages(frame, new_ids=True)]


def produce_all(kafka: KafkaSettings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(kafka))
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def raw_consume(kafka: KafkaSettings, topic: str, n: int) -> float:
    consumer = Consumer(
        {**kafka.client_config(), "group.id": f"raw-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got, began = 0, None
    while got < n:
        batch = consumer.consume(1000, 1.0)
        if batch and began is None:
            began = time.perf_counter()
        got += sum(1 for m in batch if m.error() is None)
    elapsed = time.perf_counter() - (began or time.perf_counter())
    consumer.close()
    return n / elapsed


def phase_throughput(kafka: KafkaSettings, n: int) -> dict[str, Any]:
    worker = Worker(f"tp{uuid.uuid4().hex[:6]}", kafka)
    try:
        messages = synthetic_messages(n)
        produce_all(kafka, worker.topics["in"], messages)
        raw = raw_consume(kafka, worker.topics["in"], n)
        worker.start()
        began = done = None
        peak_rss = 0.0
        while True:
            assert worker.proc is not None
            if worker.proc.poll() is not None:
                raise SystemExit(f"worker died; see {worker.log.name}")
            try:
                m = worker.metrics()
            except OSError:
                time.sleep(0.2)
                continue
            peak_rss = max(peak_rss, rss_mb(worker.proc.pid))
            seen = m.get("streamrec_worker_events_in_total", 0)
            if seen > 0 and began is None:
                began = time.perf_counter() - 0.1  # the poll interval: the first batch started at most this early
            lags = [v for k, v in m.items() if k.startswith("streamrec_worker_consumer_lag{")]
            if seen >= n and len(lags) == 2 * PARTITIONS and all(v == 0 for v in lags):
                done = time.perf_counter()
                break
            time.sleep(0.1)
        rate = n / (done - (began or done))
        return {
            "events": n,
            "raw_consume_per_s": round(raw),
            "worker_per_s": round(rate),
            "ratio": round(rate / raw, 3),
            "worker_peak_rss_mb": round(peak_rss),
            "feast_rows": {k: v for k, v in m.items() if k.startswith("streamrec_worker_feast_rows_total")},
            "batches": m.get('streamrec_worker_batch_events_count{agent="interactions"}'),
        }
    finally:
        worker.stop()


def feast_key(project: str, user_id: str) -> bytes:
    from feast.infra.online_stores.redis import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=[FEAST_USER_ENTITY_KEY], entity_values=[Value(string_val=user_id)])
    return bytes(_redis_key(project, key, entity_key_serialization_version=3))


class Load(threading.Thread):
    """Background events at a fixed rate, plus probe events handed to ``on_probe`` right before produce."""

    def __init__(self, kafka: KafkaSettings, topic: str, rate: float, seconds: float, probe_every: int, probe) -> None:
        super().__init__(daemon=True)
        self.kafka, self.topic, self.rate, self.seconds = kafka, topic, rate, seconds
        self.probe_every, self.probe = probe_every, probe
        self.sent = 0

    def run(self) -> None:
        producer = Producer(producer_config(self.kafka, **{"linger.ms": 1}))
        rng = random.Random(3)
        began = time.perf_counter()
        n = 0
        while time.perf_counter() - began < self.seconds:
            # The first WARMUP_S seconds are load only: the worker connects its stores on the first batch.
            if n % self.probe_every == 0 and time.perf_counter() - began >= WARMUP_S:
                event = InteractionEvent.new(f"probe-{uuid.uuid4().hex[:12]}", f"i{rng.randrange(2465):06d}", "click")
                self.probe(event, time.perf_counter())
            else:
                event = InteractionEvent.new(f"u{rng.randrange(20000):07d}", f"i{rng.randrange(2465):06d}", "view")
            producer.produce(self.topic, key=event.user_id.encode(), value=event.to_json_bytes())
            producer.poll(0)
            n += 1
            delay = began + n / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        producer.flush(30)
        self.sent = n


def phase_freshness(kafka: KafkaSettings, rate: float, seconds: float) -> dict[str, Any]:
    worker = Worker(f"fr{uuid.uuid4().hex[:6]}", kafka)
    worker.start()
    try:
        worker.wait_ready()
        project = worker.env["STREAMREC_FEAST_PROJECT"]
        client = redis.Redis.from_url(RedisSettings.load().effective_url)
        bloom = SeenItemStore(client, SeenItemStore.connect(RedisSettings.load(), BloomSettings.load()).backend)
        ts_field = f"_ts:{FEAST_USER_STREAM_VIEW}"
        # The first call imports Feast (and with it torch: seconds). Paid here, not in the checker's first sweep,
        # where it once charged ~6 s to every probe of the first seconds.
        feast_key(project, "warm-up")
        pending: list[tuple[InteractionEvent, float]] = []
        lock = threading.Lock()
        results: dict[str, list[float]] = {"bloom": [], "feast": []}

        def on_probe(event: InteractionEvent, t0: float) -> None:
            with lock:
                pending.append((event, t0))

        def checker(stop: threading.Event) -> None:
            # One pipelined round trip per sweep checks every pending probe: polling must stay cheap, or
            # the checker itself slows the worker it measures.
            state: dict[str, dict[str, float]] = {}
            keys: dict[str, tuple[str, bytes]] = {}
            while not stop.is_set() or pending:
                with lock:
                    current = list(pending)
                if not current:
                    time.sleep(0.002)
                    continue
                pipe = client.pipeline(transaction=False)
                for event, _ in current:
                    if event.event_id not in keys:
                        keys[event.event_id] = (bloom.backend.key(event.user_id), feast_key(project, event.user_id))
                    bloom_key, fkey = keys[event.event_id]
                    pipe.execute_command(*bloom.backend.check_command(event.user_id, [event.item_id]))
                    pipe.hexists(fkey, ts_field)
                replies = pipe.execute()
                now = time.perf_counter()
                for n, (event, t0) in enumerate(current):
                    got = state.setdefault(event.event_id, {})
                    if "bloom" not in got and bloom.backend.parse_check(replies[2 * n], 1)[0]:
                        got["bloom"] = now - t0
                    if "feast" not in got and replies[2 * n + 1]:
                        got["feast"] = now - t0
                    if len(got) == 2 or now - t0 > 30:
                        with lock:
                            pending.remove((event, t0))
                        for k in ("bloom", "feast"):
                            # Not visible within 30 s: counted as 30 s, so a backlog cannot hide.
                            results[k].append(got.get(k, now - t0) * 1000)
                time.sleep(0.002)

        stop = threading.Event()
        check = threading.Thread(target=checker, args=(stop,), daemon=True)
        check.start()
        load = Load(
            kafka, worker.topics["in"], rate, seconds + WARMUP_S, probe_every=max(int(rate // 20), 1), probe=on_probe
        )
        load.start()
        load.join()
        stop.set()
        check.join(60)
        out: dict[str, Any] = {"rate": rate, "seconds": seconds, "sent": load.sent}
        for k, v in results.items():
            out[k] = {
                "probes": len(v),
                "p50_ms": round(pct(v, 50), 1),
                "p90_ms": round(pct(v, 90), 1),
                "p99_ms": round(pct(v, 99), 1),
                "max_ms": round(max(v), 1) if v else None,
                "over_1s": sum(1 for x in v if x > 1000),
            }
        assert worker.proc is not None
        out["worker_rss_mb"] = round(rss_mb(worker.proc.pid))
        return out
    finally:
        worker.stop()


def phase_recs(kafka: KafkaSettings, rate: float, seconds: float) -> dict[str, Any]:
    worker = Worker(f"rc{uuid.uuid4().hex[:6]}", kafka)
    worker.start()
    try:
        worker.wait_ready()
        sent: dict[str, float] = {}
        latencies: list[float] = []
        stop = threading.Event()

        def reader() -> None:
            consumer = Consumer(
                {**kafka.client_config(), "group.id": f"r-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
            )
            consumer.subscribe([worker.topics["recs"]])
            while not stop.is_set():
                for msg in consumer.consume(100, 0.05):
                    if msg.error() is None:
                        now = time.perf_counter()
                        rec = decode_recommendation(msg.value())
                        t0 = sent.get(str(rec.trigger_event_id))
                        if t0 is not None:
                            latencies.append((now - t0) * 1000)
            consumer.close()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        time.sleep(2)

        def on_probe(event: InteractionEvent, t0: float) -> None:
            sent[event.event_id] = t0

        # Every event (after the warm-up) is a probe from a fresh user: no debounce applies.
        load = Load(kafka, worker.topics["in"], rate, seconds + WARMUP_S, probe_every=1, probe=on_probe)
        load.start()
        load.join()
        time.sleep(3)
        stop.set()
        thread.join(10)
        return {
            "rate": rate,
            "seconds": seconds,
            "events": len(sent),
            "messages": len(latencies),
            "p50_ms": round(pct(latencies, 50), 1),
            "p99_ms": round(pct(latencies, 99), 1),
        }
    finally:
        worker.stop()


def phase_bloom() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend in ("redisbloom", "bitmap"):
        store = SeenItemStore.connect(RedisSettings.load(), BloomSettings(backend=backend))  # type: ignore[arg-type]
        sizes = {}
        for n_items in (1, 20, 1000):
            user = f"bloom-bench-{uuid.uuid4().hex[:8]}"
            store.add({user: [f"i{k}" for k in range(n_items)]})
            sizes[f"{n_items}_items"] = store.memory_bytes(user)
            store.client.delete(store.backend.key(user))
        out[backend] = sizes
    return out


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def scaleout_run(kafka: KafkaSettings, workers: int, n: int) -> dict[str, Any]:
    worker = Worker(f"so{workers}{uuid.uuid4().hex[:6]}", kafka, workers=workers)
    try:
        produce_all(kafka, worker.topics["in"], synthetic_messages(n))
        worker.start()
        began = settled_at = done = None
        settled_seen = 0.0
        last_total, last_progress, pause = 0.0, None, 0.0
        peak_rss = 0.0
        while True:
            assert worker.proc is not None
            if worker.proc.poll() is not None:
                raise SystemExit(f"workers exited; see {worker.log.name}")
            totals, lags, owners = 0.0, [], 0
            for k in range(workers):
                try:
                    m = worker.metrics(k)
                except OSError:
                    continue
                totals += m.get("streamrec_worker_events_in_total", 0)
                own = [v for key, v in m.items() if key.startswith("streamrec_worker_consumer_lag{")]
                owners += bool(own)
                lags += own
            now = time.perf_counter()
            pids = children(worker.proc.pid) if workers > 1 else [worker.proc.pid]  # one worker runs in-process
            peak_rss = max(peak_rss, sum(rss_mb(p) for p in pids))
            if totals > 0 and began is None:
                began = last_progress = now - 0.1
            if began is not None:
                if totals > last_total:
                    if last_progress is not None:
                        pause = max(pause, now - last_progress)
                    last_total, last_progress = totals, now
                if settled_at is None and owners == workers and len(lags) == 2 * PARTITIONS:
                    settled_at, settled_seen = now, totals
            if totals >= n and len(lags) == 2 * PARTITIONS and all(v == 0 for v in lags):
                done = now
                break
            time.sleep(0.1)
        assert began is not None and done is not None
        total_rate = n / (done - began)
        out: dict[str, Any] = {
            "workers": workers,
            "events": n,
            "total_per_s": round(total_rate),
            "per_worker_per_s": round(total_rate / workers),
            "rebalance_pause_s": round(pause, 2),
            "group_settled_after_s": round((settled_at or done) - began, 1),
            "events_read": int(last_total),  # re-reads after rebalances included
            "peak_rss_mb_all_workers": round(peak_rss),
        }
        if settled_at is not None and done - settled_at > 5:
            # From the moment every worker owns partitions: distinct events still to go are not known exactly,
            # so this counts events read (re-reads included) -- an upper bound of the settled rate.
            settled_rate = (last_total - settled_seen) / (done - settled_at)
            out["settled_read_per_s"] = round(settled_rate)
            out["settled_read_per_worker_per_s"] = round(settled_rate / workers)
        return out
    finally:
        worker.stop()


def phase_scaleout(kafka: KafkaSettings, n: int, counts: list[int]) -> dict[str, Any]:
    runs = []
    for workers in counts:
        run = scaleout_run(kafka, workers, n)
        run["loadavg_after"] = os.getloadavg()
        print(json.dumps(run), flush=True)
        runs.append(run)
    return {"runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="throughput,freshness,recs,bloom")
    parser.add_argument("--events", type=int, default=200_000, help="events of the throughput phase")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s of the freshness phase")
    parser.add_argument("--recs-rate", type=float, default=200.0, help="events/s of the recommendation phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the fixed-rate phases")
    parser.add_argument("--scaleout-events", type=int, default=60_000, help="events per run of the scale-out phase")
    parser.add_argument("--scaleout-workers", default="1,2,3", help="worker counts of the scale-out phase")
    args = parser.parse_args()
    kafka = KafkaSettings.load()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
    }
    phases = args.phases.split(",")
    if "throughput" in phases:
        results["throughput"] = phase_throughput(kafka, args.events)
        print(json.dumps(results["throughput"]), flush=True)
    if "freshness" in phases:
        results["freshness"] = phase_freshness(kafka, args.rate, args.seconds)
        print(json.dumps(results["freshness"]), flush=True)
    if "recs" in phases:
        results["recs"] = phase_recs(kafka, args.recs_rate, args.seconds)
        print(json.dumps(results["recs"]), flush=True)
    if "bloom" in phases:
        results["bloom_memory_bytes"] = phase_bloom()
        print(json.dumps(results["bloom_memory_bytes"]), flush=True)
    if "scaleout" in phases:
        counts = [int(c) for c in args.scaleout_workers.split(",")]
        results["scaleout"] = phase_scaleout(kafka, args.scaleout_events, counts)
    results["loadavg_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

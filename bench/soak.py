"""Soak benchmark: the streaming worker, the archiver and the HTTP API under a steady load for a long time.
Not a test.

Needs a running stack (``streamrec stack up``; Triton serving an export, e.g. after ``make demo`` or
``streamrec serve prepare``: without one the API answers with its flagged popular-items fallback, which the
summary counts). The bench starts its own ``streamrec worker``, ``streamrec archive`` and ``streamrec api`` on
fresh topics, an archive folder and a Feast project of its own, then for ``--duration`` seconds produces
``--event-rate`` interaction events/s to Kafka and sends ``--request-rate`` GET /v1/recommendations/s (open
loop: request i is due at t0 + i / rate and its latency counts from then). Every ``--sample-s`` it records the
RSS of the three processes, the worker's consumer lag (its metrics), the archiver's lag (its group's committed
offsets against the topic's end) and the errors so far. Afterwards it waits for both lags to reach 0, stops the
archiver (which writes its buffer) and compares the archived event ids with the events Kafka acknowledged.

Targets (the summary says met or missed for each): RSS growth < 10 % per process (peak RSS of the second half
of the load against the first half after the warm-up: the archiver's RSS follows its buffer, a sawtooth);
lags bounded (at the end of the load the worker at most 10 s of events behind, the archiver, which commits
once per roll, one roll age more; both 0 after the load); 0 errors (delivery failures, answers other than 2xx
or no HTTP answer at all, processes that exited); archived events = acknowledged events. Requests still queued
behind the 64 open ones 15 s after the load ended are dropped and reported apart.

    .venv/bin/python bench/soak.py                               # 30 min, 1,000 events/s, 100 req/s
    .venv/bin/python bench/soak.py --duration 180 --warmup-s 30 --out soak.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from streamrec import artifacts as art
from streamrec.archive import read_interactions
from streamrec.client.admin import TopicSpec, delete_topics, ensure_topics, existing_topics
from streamrec.client.producer import producer_config
from streamrec.errors import ArtifactError, DataError
from streamrec.features import EVENT_TYPES
from streamrec.schemas.events import InteractionEvent
from streamrec.security import hash_api_key
from streamrec.settings import KafkaSettings, PathsSettings

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 6
RSS_GROWTH_TARGET_PCT = 10.0
LAG_BOUND_S = 10.0
API_KEY = f"soak-{uuid.uuid4().hex}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line))
    return f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB, {platform.platform()}"


@dataclass
class Child:
    """One streamrec process of the bench; its output goes to ``log``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamrec.cli.main", *self.argv],
                cwd=REPO,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@dataclass
class Tally:
    """Counters the load threads update (under a lock) and the sampler reads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    produced: int = 0
    delivered: set[str] = field(default_factory=set)
    delivery_errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    late_requests: int = 0  # sent more than 1 s after their due time (the API fell behind)
    not_sent: int = 0  # still waiting to be sent when the load ended: dropped, counted here


def produce_events(kafka: KafkaSettings, topic: str, rate: float, until: float, users: list[str], items: list[str],
                   tally: Tally) -> None:  # fmt: skip
    producer = Producer(producer_config(kafka))
    rng = random.Random(7)

    def delivered(err: KafkaError | None, msg: Message) -> None:
        with tally.lock:
            if err is None:
                tally.delivered.add(InteractionEvent.model_validate_json(msg.value() or b"").event_id)
            else:
                tally.delivery_errors[str(err)] += 1

    began, n = time.monotonic(), 0
    while time.monotonic() < until:
        due = int((time.monotonic() - began) * rate)
        while n < due:
            event = InteractionEvent.new(rng.choice(users), rng.choice(items), rng.choice(EVENT_TYPES))
            try:
                producer.produce(topic, key=event.user_id.encode(), value=event.to_json_bytes(), on_delivery=delivered)
            except BufferError:
                producer.poll(0.05)
                continue
            n += 1
        producer.poll(0)
        time.sleep(0.005)
    remaining = producer.flush(120)
    with tally.lock:
        tally.produced = n
        if remaining:
            tally.delivery_errors["not delivered at the end (flush timed out)"] += remaining


async def request_load(url: str, rate: float, until: float, users: list[str], tally: Tally) -> None:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEY}, timeout=10.0, limits=limits) as client:
        rng = random.Random(11)
        inflight: set[asyncio.Task[None]] = set()
        gate = asyncio.Semaphore(64)

        async def one(due: float, user: str) -> None:
            async with gate:
                if time.monotonic() - due > 1.0:
                    with tally.lock:
                        tally.late_requests += 1
                try:
                    response = await client.get("/v1/recommendations", params={"user_id": user, "k": "10"})
                    status = response.status_code
                    source = response.json().get("source", "?") if status == 200 else "-"
                except (httpx.HTTPError, ValueError) as exc:
                    status, source = 0, type(exc).__name__
            with tally.lock:
                tally.statuses[status] += 1
                tally.sources[source] += 1
                tally.latencies_ms.append((time.monotonic() - due) * 1000)

        began, n = time.monotonic(), 0
        while time.monotonic() < until:
            due = began + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due, rng.choice(users)))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            n += 1
        # Requests still queued behind the 64 open ones when the load ends are dropped (and counted), so that
        # the samples and the drain that follow measure the system, not the client's backlog.
        _, late = await asyncio.wait(set(inflight), timeout=15.0)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        with tally.lock:
            tally.not_sent = len(late)


def worker_lag(port: int) -> float:
    raw = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    lags = [line.rsplit(" ", 1)[1] for line in raw.splitlines() if line.startswith("streamrec_worker_consumer_lag{")]
    if not lags:
        raise OSError("the worker has no partitions assigned yet")
    return sum(map(float, lags))


def group_lag(kafka: KafkaSettings, topic: str, group: str) -> float:
    consumer = Consumer({**kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        lag = 0
        for tp in parts:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return float(lag)
    finally:
        consumer.close()


def population() -> tuple[list[str], list[str], str]:
    """Users and items of the CURRENT export (so the API ranks known users), else synthetic ids."""
    try:
        maps = art.load_id_maps(art.current_dir(PathsSettings.load().export_root))
        return maps.user_ids, maps.item_ids, "the CURRENT export's users and items"
    except (ArtifactError, OSError, ValueError):
        return [f"soak-u{n}" for n in range(20_000)], [f"soak-i{n}" for n in range(5_000)], "synthetic ids"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load (default 1800)")
    parser.add_argument("--event-rate", type=float, default=1000.0, help="events/s produced (default 1000)")
    parser.add_argument("--request-rate", type=float, default=100.0, help="API requests/s (default 100)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--warmup-s", type=float, default=120.0, help="RSS growth counts from here (default 120)")
    parser.add_argument("--drain-timeout-s", type=float, default=600.0, help="longest wait for lags to reach 0")
    parser.add_argument("--roll-age-s", type=float, default=60.0, help="the archiver's roll age (default 60)")
    parser.add_argument("--recs-source", default="popularity", help="the worker's recommendations source")
    parser.add_argument("--work", type=Path, default=Path("/tmp/streamrec-soak"), help="logs, archive, Feast")
    parser.add_argument("--out", type=Path, help="markdown summary file (also printed)")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the bench's topics afterwards")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    kafka = KafkaSettings.load()
    tag = uuid.uuid4().hex[:8]
    work = args.work / tag
    work.mkdir(parents=True)
    topics = {k: f"bench.soak.{tag}.{k}" for k in ("in", "recs", "dlq")}
    ensure_topics(
        kafka,
        [TopicSpec(topics["in"], PARTITIONS), TopicSpec(topics["recs"], PARTITIONS), TopicSpec(topics["dlq"], 1)],
    )
    archive, group, app_id = work / "archive", f"soak-archiver-{tag}", f"soak-worker-{tag}"
    worker_port, api_port = free_port(), free_port()
    common = {
        "STREAMREC_KAFKA_INTERACTIONS_TOPIC": topics["in"],
        "STREAMREC_KAFKA_DLQ_TOPIC": topics["dlq"],
        "STREAMREC_PATHS_ARCHIVE_ROOT": str(archive),
        "STREAMREC_FEAST_PROJECT": f"soak{tag}",
        "STREAMREC_FEAST_REGISTRY": str(work / "feast" / "registry.db"),
    }
    worker = Child("worker", ["worker"], {
        **common,
        "STREAMREC_STREAMS_APP_ID": app_id,
        "STREAMREC_STREAMS_INTERACTIONS_TOPIC": topics["in"],
        "STREAMREC_STREAMS_RECOMMENDATIONS_TOPIC": topics["recs"],
        "STREAMREC_STREAMS_DLQ_TOPIC": topics["dlq"],
        "STREAMREC_STREAMS_WEB_PORT": str(worker_port),
        "STREAMREC_STREAMS_WEB_HOST": "127.0.0.1",
        "STREAMREC_STREAMS_DATA_DIR": str(work / "faust"),
        "STREAMREC_STREAMS_RECS_SOURCE": args.recs_source,
    }, work / "worker.log")  # fmt: skip
    archiver = Child("archiver", ["archive"], {
        **common,
        "STREAMREC_CONSUMERS_ARCHIVER_TOPIC": topics["in"],
        "STREAMREC_CONSUMERS_ARCHIVER_GROUP": group,
        "STREAMREC_CONSUMERS_ARCHIVER_METRICS_PORT": "0",
        "STREAMREC_CONSUMERS_ROLL_MAX_AGE_S": str(args.roll_age_s),
    }, work / "archiver.log")  # fmt: skip
    api = Child("api", ["api", "--host", "127.0.0.1", "--port", str(api_port)], {
        **common,
        "STREAMREC_API_API_KEYS": json.dumps([hash_api_key(API_KEY)]),
        "STREAMREC_API_GUARD_RATE_LIMIT_DISABLED": "true",
    }, work / "api.log")  # fmt: skip
    children = [worker, archiver, api]
    users, items, ids_from = population()
    started_at = datetime.now(UTC)
    load_before = load_average()
    samples: list[dict[str, Any]] = []
    tally = Tally()
    exits: dict[str, int | None] = {}
    try:
        for child in children:
            child.start()
        deadline = time.monotonic() + 180
        while True:  # ready: the worker's lag gauges exist and the API answers
            try:
                worker_lag(worker_port)
                if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200:
                    break
            except (OSError, httpx.HTTPError):
                pass
            if time.monotonic() > deadline or not all(c.alive for c in children):
                raise SystemExit(f"components did not start; logs in {work}")
            time.sleep(1.0)
        t0 = time.monotonic()
        until = t0 + args.duration
        producer = threading.Thread(
            target=produce_events, args=(kafka, topics["in"], args.event_rate, until, users, items, tally), daemon=True
        )
        requester = threading.Thread(
            target=lambda: asyncio.run(request_load(f"http://127.0.0.1:{api_port}", args.request_rate, until, users,
                                                    tally)),
            daemon=True,
        )  # fmt: skip
        producer.start()
        requester.start()
        next_sample = t0
        while producer.is_alive() or requester.is_alive():
            now = time.monotonic()
            if now >= next_sample:
                sample: dict[str, Any] = {"t_s": round(now - t0)}
                for child in children:
                    sample[f"{child.name}_rss_mb"] = rss_mb(child.proc.pid) if child.proc else float("nan")
                try:
                    sample["worker_lag"] = worker_lag(worker_port)
                except OSError:
                    sample["worker_lag"] = float("nan")
                sample["archiver_lag"] = group_lag(kafka, topics["in"], group)
                with tally.lock:
                    sample["delivered"] = len(tally.delivered)
                    sample["errors"] = sum(tally.delivery_errors.values()) + sum(
                        v for k, v in tally.statuses.items() if not 200 <= k < 300
                    )
                sample["alive"] = all(c.alive for c in children)
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                next_sample += args.sample_s
            time.sleep(0.2)
        load_end = load_average()
        drain_began = time.monotonic()
        lags = (float("nan"), float("nan"))
        while time.monotonic() - drain_began < args.drain_timeout_s:
            with contextlib.suppress(OSError):
                lags = (worker_lag(worker_port), group_lag(kafka, topics["in"], group))
            if lags == (0.0, 0.0) or not all(c.alive for c in children):
                break
            time.sleep(2.0)
        drained_s = time.monotonic() - drain_began
        alive_at_end = {c.name: c.alive for c in children}
    finally:
        for child in reversed(children):
            exits[child.name] = child.stop()
        if not args.keep_topics:
            internal = [t for t in existing_topics(kafka) if t.startswith(app_id + "-")]
            delete_topics(kafka, [*topics.values(), *internal])
    try:
        archived = set(read_interactions(archive, columns=["event_id"])["event_id"])
    except DataError:
        archived = set()
    summary = summarise(args, samples, tally, archived, lags, drained_s, alive_at_end, exits,
                        started_at, load_before, load_end, ids_from, work)  # fmt: skip
    print(summary)
    if args.out is not None:
        args.out.write_text(summary)
    return 0


def growth(samples: list[dict[str, Any]], key: str, warmup_s: float, duration_s: float) -> tuple[float, float, float]:
    """(peak RSS in the first half of the load after the warm-up, peak in the second half, growth in %) of one
    process. Peaks, not single samples: the archiver's RSS is a sawtooth that follows its buffer (one roll)."""
    middle = (warmup_s + duration_s) / 2
    first = max((s[key] for s in samples if warmup_s <= s["t_s"] < middle), default=float("nan"))
    last = max((s[key] for s in samples if middle <= s["t_s"] <= duration_s), default=float("nan"))
    return first, last, (last - first) / first * 100 if first else float("nan")


def summarise(args: argparse.Namespace, samples: list[dict[str, Any]], tally: Tally, archived: set[str],
              lags: tuple[float, float], drained_s: float, alive: dict[str, bool], exits: dict[str, int | None],
              started_at: datetime, load_before: str, load_end: str, ids_from: str, work: Path) -> str:  # fmt: skip
    delivered = tally.delivered
    errors = sum(tally.delivery_errors.values()) + sum(v for k, v in tally.statuses.items() if not 200 <= k < 300)
    missing, unknown = len(delivered - archived), len(archived - delivered)
    lines = [
        f"# Soak run {started_at:%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `.venv/bin/python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
        f"- Machine: {machine()}",
        f"- Load average (1, 5, 15 min) before: {load_before}; at the end of the load: {load_end}",
        f"- Load: {args.duration:.0f} s, {args.event_rate:g} events/s, {args.request_rate:g} GET "
        f"/v1/recommendations/s (open loop), {PARTITIONS} partitions; ids: {ids_from}; worker recommendations: "
        f"{args.recs_source}",
        f"- Logs: {work}",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
    ]
    met_all = True
    for key in ("worker", "api", "archiver"):
        first, last, pct_growth = growth(samples, f"{key}_rss_mb", args.warmup_s, args.duration)
        ok = pct_growth < RSS_GROWTH_TARGET_PCT
        met_all &= ok
        lines.append(
            f"| {key} RSS growth < {RSS_GROWTH_TARGET_PCT:g} % (peak of the second half of the load against the "
            f"first, after {args.warmup_s:.0f} s) | {first:.0f} -> {last:.0f} MiB ({pct_growth:+.1f} %) | "
            f"{'yes' if ok else 'no'} |"
        )
    worker_lags = [s["worker_lag"] for s in samples if s["worker_lag"] == s["worker_lag"]]
    archiver_lags = [s["archiver_lag"] for s in samples]
    # Bounded: at the end of the load the worker is at most LAG_BOUND_S of events behind; the archiver commits
    # once per roll, so its committed offsets may trail by one roll's age more.
    end = [s for s in samples if s["t_s"] <= args.duration][-1]
    worker_bound = LAG_BOUND_S * args.event_rate
    archiver_bound = (LAG_BOUND_S + args.roll_age_s) * args.event_rate
    ok = lags == (0.0, 0.0) and end["worker_lag"] <= worker_bound and end["archiver_lag"] <= archiver_bound
    met_all &= ok
    lines.append(
        f"| lag bounded: at the end of the load worker <= {worker_bound:.0f} ({LAG_BOUND_S:g} s of events), "
        f"archiver <= {archiver_bound:.0f} (+ one {args.roll_age_s:g} s roll); 0 after it | worker "
        f"{end['worker_lag']:.0f} (max {max(worker_lags, default=float('nan')):.0f}), archiver "
        f"{end['archiver_lag']:.0f} (max {max(archiver_lags, default=float('nan')):.0f}); after the load "
        f"{lags[0]:.0f} / {lags[1]:.0f} (drained in {drained_s:.0f} s) | {'yes' if ok else 'no'} |"
    )
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done: -15 is the API's clean stop.
    ok = errors == 0 and all(alive.values()) and all(code in (0, -signal.SIGTERM) for code in exits.values())
    met_all &= ok
    lines.append(
        f"| 0 errors | delivery failures {dict(tally.delivery_errors) or 0}; answers by status "
        f"{dict(sorted(tally.statuses.items()))}; alive at the end {alive}; exit codes {exits} | "
        f"{'yes' if ok else 'no'} |"
    )
    ok = missing == 0 and unknown == 0 and len(delivered) == tally.produced
    met_all &= ok
    lines.append(
        f"| archived = produced | produced {tally.produced}, acknowledged {len(delivered)}, archived (distinct ids) "
        f"{len(archived)}, missing {missing}, not produced {unknown} | {'yes' if ok else 'no'} |"
    )
    lat = tally.latencies_ms
    lines += [
        "",
        f"All targets met: {'yes' if met_all else 'no'}.",
        "",
        f"API answers by source: {dict(tally.sources)}; latency from the due time p50 {pct(lat, 50):.1f} ms, "
        f"p99 {pct(lat, 99):.1f} ms, max {max(lat, default=float('nan')):.1f} ms; requests sent > 1 s after "
        f"their due time: {tally.late_requests}; still queued when the load ended (dropped, not counted as "
        f"answers): {tally.not_sent}.",
        "",
        "| t (s) | worker RSS (MiB) | API RSS | archiver RSS | worker lag | archiver lag | acknowledged | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    step = max(1, len(samples) // 30)
    for s in [*samples[::step], *([samples[-1]] if (len(samples) - 1) % step else [])]:
        lines.append(
            f"| {s['t_s']} | {s['worker_rss_mb']:.0f} | {s['api_rss_mb']:.0f} | {s['archiver_rss_mb']:.0f} | "
            f"{s['worker_lag']:.0f} | {s['archiver_lag']:.0f} | {s['delivered']} | {s['errors']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

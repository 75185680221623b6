"""Producer throughput and delivery latency of the SDK from one Python process.

    .venv/bin/python bench/producer_throughput.py [--events 300000] [--users 10000]

Needs a broker (the local stack: `streamrec stack up --no-triton`, or KAFKA_BOOTSTRAP_SERVERS). Produces to a
fresh 6-partition topic, deleted afterwards. Two phases, same process:
  * throughput: events built and serialized up front vs. built + serialized inside the timed loop;
  * latency: at a fixed rate, time from produce() to the delivery report (acks=all), p50/p99.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime

import numpy as np

from streamrec.client import InteractionProducer
from streamrec.client.admin import TopicSpec, delete_topics, ensure_topics
from streamrec.schemas import InteractionEvent
from streamrec.settings import KafkaSettings


def make_events(n: int, users: int) -> list[InteractionEvent]:
    base = int(time.time() * 1000)
    kinds = ["view", "view", "view", "click", "add_to_cart", "purchase"]
    return [
        InteractionEvent.new(f"u{i % users}", f"i{(i * 7919) % 2465}", kinds[i % len(kinds)], timestamp=base + i)
        for i in range(n)
    ]


def throughput(settings: KafkaSettings, topic: str, events: list[InteractionEvent], serialize_in_loop: bool) -> float:
    payloads = [(e.user_id.encode(), e.to_json_bytes()) for e in events] if not serialize_in_loop else []
    with InteractionProducer(settings, topic=topic) as producer:
        start = time.perf_counter()
        if serialize_in_loop:
            for event in events:
                producer.send(event)
        else:
            for key, value in payloads:
                producer.send_raw(key, value)
        producer.flush(120)
        elapsed = time.perf_counter() - start
    return len(events) / elapsed


def latency(settings: KafkaSettings, topic: str, events: list[InteractionEvent], rate: float) -> dict[str, float]:
    sent_at: dict[bytes, float] = {}
    latencies: list[float] = []

    def on_delivery(err, msg) -> None:  # type: ignore[no-untyped-def]
        if err is None:
            latencies.append(time.perf_counter() - sent_at.pop(msg.value()[:60]))

    with InteractionProducer(settings, topic=topic, on_delivery=on_delivery) as producer:
        # Warm-up: metadata, the idempotent producer id and connections to every partition leader.
        for event in events[:200]:
            value = event.to_json_bytes()
            sent_at[value[:60]] = time.perf_counter()
            producer.send_raw(event.user_id.encode(), value)
        producer.flush(60)
        latencies.clear()
        events = events[200:]
        start = time.perf_counter()
        for n, event in enumerate(events):
            due = start + n / rate
            while (now := time.perf_counter()) < due:
                producer.poll(min(0.001, due - now))
            value = event.to_json_bytes()
            sent_at[value[:60]] = time.perf_counter()
            producer.send_raw(event.user_id.encode(), value)
        producer.flush(60)
    ms = np.array(latencies) * 1000
    return {
        "rate": rate,
        "n": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-rate", type=float, default=5_000)
    parser.add_argument("--latency-events", type=int, default=20_000)
    args = parser.parse_args()

    settings = KafkaSettings.load()
    topic = f"bench.producer.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [TopicSpec(topic, 6)])
    try:
        events = make_events(args.events, args.users)
        size = statistics.mean(len(e.to_json_bytes()) for e in events[:1000])
        pre = [throughput(settings, topic, events, serialize_in_loop=False) for _ in range(args.repeats)]
        inloop = [throughput(settings, topic, events, serialize_in_loop=True) for _ in range(args.repeats)]
        lat = latency(settings, topic, make_events(args.latency_events, args.users), args.latency_rate)
    finally:
        delete_topics(settings, [topic])
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} cores={__import__('os').cpu_count()}",
        "broker": settings.bootstrap,
        "events": args.events,
        "mean_event_bytes": round(size, 1),
        "throughput_preserialized_eps": [round(x) for x in pre],
        "throughput_with_serialization_eps": [round(x) for x in inloop],
        "delivery_latency": lat,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

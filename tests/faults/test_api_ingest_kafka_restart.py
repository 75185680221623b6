"""``POST /v1/events`` while the Kafka broker (this test's own) is stopped and started again: the API answers
202 only for events the broker acknowledged, a 503 in the documented error shape while it cannot write, never
another 5xx, and every 202'd event is in the topic exactly once afterwards."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamrec.client.admin import TopicSpec, ensure_topics
from streamrec.schemas.events import InteractionEvent
from streamrec.stack.kafka import KafkaComponent
from tests.faults.api_load import ApiProcess, keep_calling, wait_for
from tests.faults.test_kafka_restart import topic_event_ids

pytestmark = pytest.mark.integration

PARTITIONS = 3
EVENTS_PER_CALL = 4
#: Shorter than the outage, so that calls during it are answered 503 rather than waiting it out.
DELIVERY_TIMEOUT_S = 3


def events_body(tag: str, n: int) -> tuple[list[dict[str, Any]], list[str]]:
    now_ms = int(time.time() * 1000)
    events = [
        InteractionEvent.new(f"{tag}-u{(n + k) % 17}", f"it{(n * 7 + k) % 40}", "view", timestamp=now_ms)
        for k in range(EVENTS_PER_CALL)
    ]
    return [json.loads(e.to_json_bytes()) for e in events], [e.event_id for e in events]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_events_posted_across_a_broker_restart_are_202_only_once_acknowledged_and_in_the_topic_once(
    own_kafka: KafkaComponent, fault_run_dir: Path, unique_id: str
) -> None:
    topic = f"test.apikr.{unique_id}"
    ensure_topics(own_kafka.kafka, [TopicSpec(topic, PARTITIONS)])
    api = ApiProcess(
        {
            "STREAMREC_KAFKA_LOCAL_PORT": str(own_kafka.kafka.local_port),
            "STREAMREC_KAFKA_INTERACTIONS_TOPIC": topic,
            "STREAMREC_API_GUARD_DELIVERY_TIMEOUT_S": str(DELIVERY_TIMEOUT_S),
        },
        fault_run_dir / "api.log",
    )
    api.start()

    def post(client: httpx.Client, n: int) -> tuple[httpx.Response, list[str]]:
        body, ids = events_body(f"a{unique_id}", n)
        return client.post("/v1/events", json=body), ids

    outage: dict[str, float] = {}

    def restart() -> None:
        outage["stopped"] = time.monotonic()
        own_kafka.stop()
        time.sleep(3.0)
        own_kafka.start(180.0, lambda _: None)
        outage["started"] = time.monotonic()

    try:
        with keep_calling(api, post, threads=4, rate_per_thread=10.0) as load:
            wait_for(lambda: sum(a.status == 202 for a in load.snapshot()) >= 40, "40 events calls acknowledged", 60)
            restarter = threading.Thread(target=restart)
            restarter.start()
            restarter.join(200)
            assert "started" in outage, "the broker did not come back"
            # Back to normal: 40 acknowledged calls sent after the broker was up again.
            wait_for(
                lambda: sum(a.status == 202 and a.sent > outage["started"] for a in load.snapshot()) >= 40,
                "40 calls acknowledged after the restart",
                90,
            )
        answers = load.snapshot()
        assert api.alive(), api.tail()
    finally:
        api.stop()

    by_status = Counter(a.status for a in answers)
    print(f"broker down {outage['started'] - outage['stopped']:.1f}s; answers by status {dict(by_status)}")
    assert set(by_status) <= {202, 503}, [a for a in answers if a.status not in (202, 503)][:3]
    refused = [a for a in answers if a.status == 503]
    assert refused, "no call was refused during the outage: the fault was not observed"
    for answer in refused:
        assert answer.body["error"] == "unavailable" and answer.body["field"] == "<payload>", answer.body
        assert "Kafka" in answer.body["reason"] or "queue" in answer.body["reason"], answer.body
    for answer in (a for a in answers if a.status == 202):
        assert answer.body == {"accepted": EVENTS_PER_CALL, "event_ids": answer.tag}, answer.body
    acknowledged = [i for a in answers if a.status == 202 for i in a.tag]
    not_acknowledged = {i for a in answers if a.status == 503 for i in a.tag}
    in_topic = Counter(topic_event_ids(own_kafka.kafka.client_config(), topic, len(acknowledged)))
    missing = [i for i in acknowledged if in_topic[i] == 0]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events are not in the topic"
    doubled = [i for i, count in in_topic.items() if count > 1]
    assert not doubled, f"{len(doubled)} events are in the topic more than once"
    # A refused call's events may still have been written (its delivery outlived the answer), never twice.
    assert set(in_topic) <= set(acknowledged) | not_acknowledged

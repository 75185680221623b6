"""The worker while its Valkey (this test's own: Bloom filters with the bf module, Feast rows, append-only
file) is killed with SIGKILL and started again mid-stream: it waits for the store instead of failing, then
resumes; afterwards every Bloom filter holds every item and the counts equal the ground truth."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from streamrec.client import InteractionProducer
from streamrec.stack.valkey import ValkeyComponent
from tests.faults.api_load import wait_for
from tests.faults.conftest import kill_9
from tests.streams.test_worker import assert_bloom_complete, assert_features_match, make_events, with_duplicates

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 3


@pytest.mark.timeout(240)
def test_valkey_killed_mid_stream_the_worker_waits_resumes_and_loses_nothing(
    own_valkey: ValkeyComponent, worker_factory: Any, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker writes its Bloom filters and Feast rows into this test's Valkey; Kafka stays the session's.
    monkeypatch.setenv("STREAMREC_REDIS_LOCAL_PORT", str(own_valkey.settings.local_port))
    worker = worker_factory(partitions=PARTITIONS)
    events = with_duplicates(make_events(f"vr{unique_id}", 2400, users=40, seed=9), every=100)
    worker.start()

    def produce() -> None:
        with InteractionProducer(worker.stack.kafka, topic=worker.topics["interactions"]) as producer:
            began = time.monotonic()
            for k, event in enumerate(events):
                producer.send(event)
                if k % 25 == 0:
                    delay = k / 150.0 - (time.monotonic() - began)
                    if delay > 0:
                        time.sleep(delay)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_for(
            lambda: worker.proc.poll() is not None or worker.metric("streamrec_worker_events_in_total") >= 300,
            "the worker consuming",
            120,
        )
        assert worker.proc.poll() is None, worker.tail()
        before = worker.metric("streamrec_worker_events_in_total")
        kill_9(own_valkey)
        time.sleep(6.0)
        assert worker.proc.poll() is None, f"the worker exited while Valkey was down:\n{worker.tail()}"
        own_valkey.start(60.0, lambda _: None)  # replays its append-only file
    finally:
        producer.join(60)
    print(f"events in before the kill: {before:.0f} of {len(events)}")
    assert before < len(events), "every event was in before the kill: the fault did not fall mid-stream"
    # It waited for Valkey instead of failing, then wrote every event: Bloom filters complete, counts equal the
    # ground truth (nothing lost in the restart, no re-delivered event counted twice).
    worker.wait_idle(partitions=PARTITIONS, timeout_s=150)
    assert_bloom_complete(events, "redisbloom")
    assert_features_match(worker, events)

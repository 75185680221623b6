"""The demo's live-state step against a real worker: one click shows up in the Bloom filter and in Feast."""

from __future__ import annotations

from typing import Any

import pytest

from streamrec.demo import showcase
from streamrec.settings import RedisSettings
from streams.feast_store import open_store

pytestmark = pytest.mark.slow


def test_show_event_updates_state_sees_the_click_in_bloom_and_feast(worker_factory: Any, unique_id: str) -> None:
    worker = worker_factory(partitions=1)
    worker.start()
    worker.wait_idle(partitions=1)
    kafka = worker.stack.kafka.model_copy(update={"interactions_topic": worker.topics["interactions"]})
    bloom = showcase.connect_bloom()
    feast_store = open_store(worker.feast, RedisSettings.load())
    user = f"demo-{unique_id}"
    lines: list[str] = []

    assert showcase.show_event_updates_state(kafka, bloom, feast_store, user, "it3", lines.append, timeout_s=60)

    assert lines[0].startswith("before: item it3 in user") and "Bloom filter: False" in lines[0]
    assert "clicks in the last hour 0, recent items []" in lines[0]
    assert "in the Bloom filter: True" in lines[1] and "clicks in the last hour 1, recent items ['it3']" in lines[1]
    state = showcase.read_user_state(bloom, feast_store, user, "it3")
    assert state == showcase.LiveUserState(seen=True, recent_items=["it3"], clicks_1h=1)

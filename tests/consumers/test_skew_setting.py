"""The archiver's validating consumer takes its clock-skew bound from the core Kafka setting, like the API and
the worker (STREAMREC_KAFKA_MAX_FUTURE_SKEW_S)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streamrec.client.validating import InteractionConsumer
from streamrec.errors import RejectReason
from streamrec.schemas.events import InteractionEvent
from streamrec.settings import KafkaSettings
from tests.streams.test_validating_consumer import APPEND, Canned, Msg


@pytest.mark.parametrize(("skew_s", "accepted"), [(300.0, []), (900.0, [0])])
def test_an_event_ten_minutes_ahead_is_accepted_only_under_a_wider_skew_setting(
    skew_s: float, accepted: list[int]
) -> None:
    ahead = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND + timedelta(minutes=10))
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", max_future_skew_s=skew_s)
    consumer = InteractionConsumer(settings, "g", "archiver")
    consumer.observe_dead_letters()
    canned = Canned([Msg(0, b"u1", ahead.to_json_bytes())])
    consumer._consumer.close()
    consumer._consumer, consumer._producer = canned, canned  # type: ignore[assignment]
    assert [v.offset for v in consumer.poll_batch()] == accepted
    assert consumer.rejected == ({} if accepted else {RejectReason.FUTURE_TIMESTAMP: 1})

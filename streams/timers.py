"""The worker's Faust timers and sensor: offset-gap repair and consumer-lag gauges."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.metrics import WorkerMetrics, make_lag_sensor
from streams.offset_repair import OffsetGapRepair

if TYPE_CHECKING:
    from faust.types import AppT

    from streams.interfaces import WorkerTopics
    from streams.settings import StreamsSettings


def register_timers(app: AppT, topics: WorkerTopics, metrics: WorkerMetrics, settings: StreamsSettings) -> None:
    watched = topics.consumed
    gap_repair = OffsetGapRepair(lambda: app.consumer, set(watched), metrics.offset_gaps_repaired.inc)

    async def repair_offset_gaps() -> None:
        await gap_repair.check()

    app.timer(settings.offset_repair_interval_s)(repair_offset_gaps)

    # Refreshed on every commit (a sensor callback) and on a timer (commits stop when nothing moves).
    lag_sensor = make_lag_sensor(metrics, watched, lambda: app.consumer)
    app.sensors.add(lag_sensor)

    async def refresh_lag() -> None:
        lag_sensor.refresh()

    app.timer(settings.lag_interval_s)(refresh_lag)

"""The worker's Faust timers and sensor: offset-gap repair, consumer-lag gauges, eviction of idle state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.batch import item_partition
from streams.eviction import ITEM_HORIZON_MS, USER_HORIZON_MS, Entry, Evictor, user_entry
from streams.metrics import WorkerMetrics, make_lag_sensor
from streams.offset_repair import OffsetGapRepair
from streams.runtime import FaustTable
from streams.state import ItemState

if TYPE_CHECKING:
    from faust.types import AppT

    from streams.interfaces import WorkerTables, WorkerTopics
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
        await lag_sensor.refresh_ends()
        lag_sensor.refresh()

    app.timer(settings.lag_interval_s)(refresh_lag)


def register_eviction(
    app: AppT, topics: WorkerTopics, tables: WorkerTables, metrics: WorkerMetrics, settings: StreamsSettings
) -> tuple[Evictor[object], Evictor[ItemState]]:
    """Every ``evict_interval_s``: users idle past the longest user window (or the de-duplication window, if
    longer) and items idle past the longest item window leave the tables of the partitions this worker owns."""
    partitions = tables.items.partitions or 1

    def item_entry(key: str, state: ItemState) -> Entry:
        return Entry(key, item_partition(key, partitions), state.last_ms)

    users: Evictor[object] = Evictor(
        "users",
        FaustTable(tables.users),
        user_entry,
        max(USER_HORIZON_MS, settings.dedupe_window_s * 1000),
        metrics.state_evicted.labels("users").inc,
    )
    items = Evictor(
        "items", FaustTable(tables.items), item_entry, ITEM_HORIZON_MS, metrics.state_evicted.labels("items").inc
    )
    source, by_item = topics.interactions.get_topic_name(), topics.by_item.get_topic_name()

    def owned(topic: str) -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}

    async def evict_idle_state() -> None:
        await users.sweep(owned(source))
        await items.sweep(owned(by_item))
        metrics.state_keys.labels("users").set(len(tables.users.data))
        metrics.state_keys.labels("items").set(len(tables.items.data))

    app.timer(settings.evict_interval_s)(evict_idle_state)
    return users, items

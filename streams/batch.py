"""Pure batch planning: what a batch of events means for each user and item, and the by-item bundles.

The Faust agents call these functions and perform the resulting I/O; nothing here touches Kafka, Redis
or Faust, so the whole decision logic is unit-tested without a broker.

Repartitioning by item: de-duplicated events are forwarded to the internal by-item topic. Instead of one
message per event, events of one batch going to the same by-item partition from the same source
partition travel together as an :class:`ItemBundle` (entries in source-offset order). The item's
partition is Kafka's default (murmur2) partition of its id, so an item always lands in one partition,
exactly as if each event had been keyed by item id; bundling only saves per-message overhead.

A bundle also carries the source offset ranges its batch read (``spans``): every forwarded event of those
offsets bound for the bundle's partition is in it, so once it is applied the item's coverage takes the
whole ranges, not only the entries' own offsets (a compact state; see :mod:`streams.state`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from streamrec.errors import InvalidEventError
from streamrec.features import EVENT_TYPES
from streamrec.schemas.events import InteractionEvent
from streams.state import (
    DedupeLimits,
    EventRecord,
    ItemEntry,
    ItemFeatures,
    ItemState,
    Outcome,
    Span,
    UserFeatures,
    UserState,
    apply_item_entry,
    apply_user_event,
    cover_all,
    item_features,
    prune_item,
    prune_user,
    spans_holding,
    user_features,
)

ETYPE_INDEX = {name: i for i, name in enumerate(EVENT_TYPES)}
BUNDLE_FORMAT = 2
ENTRIES_ONLY_BUNDLE_FORMAT = 1  # no spans: entries cover their own offsets only


def to_record(event: InteractionEvent, partition: int, offset: int, read_ms: int | None = None) -> EventRecord:
    # The schema hands over the canonical 8-4-4-4-12 form: its hex digits are the UUID's integer
    # (what uuid.UUID(...).int gives, at a fraction of the cost, once per event).
    return EventRecord(
        event_id=int(event.event_id.replace("-", ""), 16),
        user_id=event.user_id,
        item_id=event.item_id,
        etype=ETYPE_INDEX[event.event_type.value],
        ts_ms=event.epoch_ms,
        partition=partition,
        offset=offset,
        read_ms=-1 if read_ms is None else read_ms,
    )


# ---------------------------------------------------------------------------------------------------- users


@dataclass(slots=True)
class UserBatch:
    """The effects of one batch on one user."""

    user_id: str
    new: int = 0
    reprocessed: int = 0
    duplicates: int = 0
    stale: int = 0
    bloom_items: list[str] = field(default_factory=list)  # unique, first-seen order
    forwards: list[EventRecord] = field(default_factory=list)  # new and re-read events
    trigger: EventRecord | None = None  # latest new or re-read event (recommendation refresh)
    features: UserFeatures | None = None  # set when anything was (re)applied

    covered_more: bool = False  # the batch's offset ranges added to the coverage

    @property
    def changed(self) -> bool:
        """State must be written: something was counted, or the coverage grew (a duplicate, a new range)."""
        return self.new > 0 or self.duplicates > 0 or self.covered_more

    @property
    def effective(self) -> bool:
        """Side effects must be (re)done: new or re-read events."""
        return self.new > 0 or self.reprocessed > 0


def plan_user(
    state: UserState | None,
    events: Sequence[EventRecord],
    category_of: Callable[[str], str],
    limits: DedupeLimits,
    spans: Mapping[int, Sequence[Span]] | None = None,
) -> tuple[UserState, UserBatch]:
    """Apply one user's events of a batch (in read order) to its state; then cover ``spans`` (source
    partition -> offset ranges the batch read) of the partitions the user's events came from."""
    state = state if state is not None else UserState()
    result = UserBatch(events[0].user_id)
    seen_items: set[str] = set()
    for ev in events:
        outcome = apply_user_event(state, ev, category_of(ev.item_id))
        if outcome is Outcome.DUPLICATE:
            result.duplicates += 1
            continue
        # Bloom writes are idempotent, so a re-read event is simply added again (its first write may
        # not have happened before the crash). Dislikes are "seen" too: never recommend them again.
        if ev.item_id not in seen_items:
            seen_items.add(ev.item_id)
            result.bloom_items.append(ev.item_id)
        if outcome is Outcome.STALE:
            # Applied long ago and evicted from the window: whether it was forwarded then is unknown, and
            # forwarding again could double count the item, so only the idempotent Bloom write is redone.
            result.stale += 1
            continue
        if outcome is Outcome.NEW:
            result.new += 1
        else:
            result.reprocessed += 1
        result.forwards.append(ev)
        result.trigger = ev
    if spans:
        # Only the ranges holding this user's events: as good for merging (a partition's batch is one range
        # in the common case) and bounded by the user's events when a batch read many short runs.
        by_partition: dict[int, list[int]] = {}
        for ev in events:
            by_partition.setdefault(ev.partition, []).append(ev.offset)
        for partition, offsets in by_partition.items():
            read = spans.get(partition)
            if not read:
                continue  # the events' own offsets are covered already
            own = spans_holding(read, offsets)
            result.covered_more = cover_all(state.covered, partition, own) or result.covered_more
    if result.changed:
        prune_user(state, limits)
    if result.effective:
        result.features = user_features(state)
    return state, result


def group_by_user(records: Iterable[EventRecord]) -> dict[str, list[EventRecord]]:
    grouped: dict[str, list[EventRecord]] = {}
    for rec in records:
        grouped.setdefault(rec.user_id, []).append(rec)
    return grouped


# ---------------------------------------------------------------------------------------------------- bundles


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (as in the Java client's default partitioner), 32-bit unsigned."""
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


@lru_cache(maxsize=1 << 16)
def item_partition(item_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a message keyed by ``item_id``."""
    return (murmur2(item_id.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class ItemBundle:
    source_partition: int
    entries: tuple[ItemEntry, ...]  # ascending source offset
    spans: tuple[Span, ...] = ()  # source offset ranges read by the batch (entries included)


def bundle_forwards(
    forwards: Iterable[EventRecord], partitions: int, spans: Mapping[int, Sequence[Span]] | None = None
) -> dict[int, list[ItemBundle]]:
    """By-item partition -> bundles (one per source partition), entries sorted by source offset; each
    carries ``spans[source partition]``, the offset ranges its batch read."""
    groups: dict[tuple[int, int], list[EventRecord]] = {}
    for ev in forwards:
        groups.setdefault((item_partition(ev.item_id, partitions), ev.partition), []).append(ev)
    out: dict[int, list[ItemBundle]] = {}
    for (dest, source), evs in sorted(groups.items()):
        evs.sort(key=lambda e: e.offset)
        entries = tuple(ItemEntry(e.item_id, e.etype, e.ts_ms, e.offset) for e in evs)
        out.setdefault(dest, []).append(ItemBundle(source, entries, tuple(spans.get(source, ())) if spans else ()))
    return out


def encode_bundle(bundle: ItemBundle) -> bytes:
    rows = [[e.item_id, e.etype, e.ts_ms, e.offset] for e in bundle.entries]
    payload = {"v": BUNDLE_FORMAT, "p": bundle.source_partition, "s": [list(s) for s in bundle.spans], "e": rows}
    return json.dumps(payload, separators=(",", ":")).encode()


def decode_bundle(raw: bytes) -> ItemBundle:
    """Raises InvalidEventError: the topic is internal, so a bad bundle means a bug or a foreign writer."""
    try:
        payload = json.loads(raw)
        version = payload.get("v")
        if version not in (BUNDLE_FORMAT, ENTRIES_ONLY_BUNDLE_FORMAT):
            raise ValueError(f"unsupported bundle format {version!r}")
        entries = tuple(ItemEntry(str(item), int(etype), int(ts), int(off)) for item, etype, ts, off in payload["e"])
        spans: tuple[Span, ...] = ()
        if version == BUNDLE_FORMAT:
            spans = tuple((int(lo), int(hi)) for lo, hi in payload["s"])
            if any(hi < lo for lo, hi in spans) or any(b[0] <= a[1] for a, b in zip(spans, spans[1:], strict=False)):
                raise ValueError("offset ranges not ascending and disjoint")
            if spans:
                spans_holding(spans, (e.offset for e in entries))  # raises for an entry outside them
        return ItemBundle(int(payload["p"]), entries, spans)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidEventError("<bundle>", f"malformed by-item bundle: {exc}") from None


# ---------------------------------------------------------------------------------------------------- items


@dataclass(slots=True)
class ItemBatch:
    item_id: str
    applied: int = 0
    skipped: int = 0
    features: ItemFeatures | None = None


def plan_item(
    state: ItemState | None,
    source_entries: Sequence[tuple[int, ItemEntry]],
    spans: Iterable[tuple[int, Span]] = (),
) -> tuple[ItemState, ItemBatch]:
    """Apply one item's (source partition, entry) pairs of a batch, in arrival order; then cover ``spans``
    ((source partition, offset range) of the bundles that carried them)."""
    state = state if state is not None else ItemState()
    result = ItemBatch(source_entries[0][1].item_id)
    for source, entry in source_entries:
        if apply_item_entry(state, source, entry):
            result.applied += 1
        else:
            result.skipped += 1
    for source, span in spans:
        cover_all(state.covered, source, (span,))
    if result.applied:
        prune_item(state)
        result.features = item_features(state)
    return state, result


def group_bundles_by_item(bundles: Iterable[ItemBundle]) -> dict[str, list[tuple[int, ItemEntry]]]:
    grouped: dict[str, list[tuple[int, ItemEntry]]] = {}
    for bundle in bundles:
        for entry in bundle.entries:
            grouped.setdefault(entry.item_id, []).append((bundle.source_partition, entry))
    return grouped


def spans_by_item(bundles: Iterable[ItemBundle]) -> dict[str, list[tuple[int, Span]]]:
    """Item -> (source partition, offset range) of every bundle with an entry of the item."""
    out: dict[str, list[tuple[int, Span]]] = {}
    for bundle in bundles:
        if not bundle.spans:
            continue
        offsets: dict[str, list[int]] = {}
        for e in bundle.entries:
            offsets.setdefault(e.item_id, []).append(e.offset)
        for item_id, own in offsets.items():
            holding = bundle.spans if len(bundle.spans) == 1 else spans_holding(bundle.spans, own)
            out.setdefault(item_id, []).extend((bundle.source_partition, span) for span in holding)
    return out

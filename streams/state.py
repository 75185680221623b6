"""Per-user and per-item streaming state: plain data and pure functions (no Kafka, Redis or Faust here).

Feature semantics are those of :mod:`streamrec.features`: trailing event-time windows at one-minute
resolution ending at the entity's latest event. An event at minute ``m`` counts in window ``W`` as of
the entity's latest minute ``r`` when ``r - m < W``.

Idempotence lives in the state itself, so that counters and the de-duplication marker change in one
changelog write:

* :class:`UserState` remembers recent event ids with the source (partition, offset) they were read at,
  and, per source partition, the highest offset it has applied (a watermark). An id seen at the *same*
  position is a re-read after a crash (its counters are already in; its side effects are redone); at a
  *different* position it is a true duplicate (dropped). An unknown id at or below the watermark was
  applied once and has since left the bounded window (stale: not counted again, not forwarded).
* :class:`ItemState` keeps a watermark per source partition: the highest source offset applied. Events
  re-forwarded after a crash carry offsets at or below it and are skipped.
"""

from __future__ import annotations

import json
from bisect import insort
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from streamrec.errors import DataError
from streamrec.features import (
    BUCKET_MS,
    EVENT_TYPES,
    ITEM_COUNTED_TYPES,
    ITEM_WINDOWS,
    RECENT_ITEM_EVENT_TYPES,
    RECENT_ITEMS_LEN,
    TOP_CATEGORY_WINDOW,
    TRENDING_WEIGHTS,
    USER_WINDOWS,
    trending_score,
)

STATE_FORMAT = 1
DISLIKE = EVENT_TYPES.index("dislike")
N_TYPES = len(EVENT_TYPES)
UNKNOWN_CATEGORY = "unknown"

_USER_HORIZON = max(USER_WINDOWS.values())
_CATEGORY_HORIZON = USER_WINDOWS[TOP_CATEGORY_WINDOW]
_ITEM_HORIZON = max(ITEM_WINDOWS.values())
#: Position of each event type among the item counters, or -1 when items do not count it (dislike).
ITEM_SLOT: tuple[int, ...] = tuple(ITEM_COUNTED_TYPES.index(t) if t in ITEM_COUNTED_TYPES else -1 for t in EVENT_TYPES)
_N_ITEM = len(ITEM_COUNTED_TYPES)
#: Event types that feed recent items and the top category (not dislikes: no interest signal).
_RECENT_TYPES = frozenset(EVENT_TYPES.index(t) for t in RECENT_ITEM_EVENT_TYPES)
_ITEM_WEIGHTS = tuple(TRENDING_WEIGHTS[t] for t in ITEM_COUNTED_TYPES)


class Outcome(Enum):
    NEW = "new"
    REPROCESSED = "reprocessed"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """The fields of a validated interaction the state needs, plus where it was read."""

    event_id: int  # the UUID as a 128-bit integer (compact, exact)
    user_id: str
    item_id: str
    etype: int  # index into EVENT_TYPES
    ts_ms: int
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DedupeLimits:
    max_events: int = 1000
    window_minutes: int = 7 * 24 * 60


# ---------------------------------------------------------------------------------------------------- users


@dataclass(slots=True)
class UserState:
    last_ms: int = -1  # latest event time seen (epoch ms); -1: none
    counted: int = 0  # events counted, duplicates excluded
    # (ts_ms, item_id) of the latest non-dislike events, ascending by time (ties: arrival order).
    recent: list[tuple[int, str]] = field(default_factory=list)
    buckets: dict[int, list[int]] = field(default_factory=dict)  # minute -> count per EVENT_TYPES
    categories: dict[int, dict[str, int]] = field(default_factory=dict)  # minute -> non-dislike events per category
    seen: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # event id -> (partition, offset, minute)
    watermarks: dict[int, int] = field(default_factory=dict)  # source partition -> highest offset applied


@dataclass(frozen=True, slots=True)
class UserFeatures:
    counts: tuple[int, ...]  # aligned with streamrec.features.USER_COUNT_FEATURES
    recent_items: tuple[str, ...]  # newest first
    top_category: str | None  # most frequent category over 24 h (ties: smallest name); None: no such event
    last_event_ms: int


def apply_user_event(state: UserState, ev: EventRecord, category: str) -> Outcome:
    """Count ``ev`` unless its id was seen before; see the module docstring for the two kinds of repeat."""
    seen = state.seen.get(ev.event_id)
    if seen is not None:
        if seen[0] == ev.partition and seen[1] == ev.offset:
            return Outcome.REPROCESSED
        # The watermark moves past a duplicate too: should its id be evicted before a re-read, the re-read
        # is then recognised as stale instead of being counted.
        if ev.offset > state.watermarks.get(ev.partition, -1):
            state.watermarks[ev.partition] = ev.offset
        return Outcome.DUPLICATE
    # A partition is read in offset order, so everything of this user at or below the watermark has been
    # through here once: an unknown id there was evicted from the window, not never seen.
    if ev.offset <= state.watermarks.get(ev.partition, -1):
        return Outcome.STALE
    state.watermarks[ev.partition] = ev.offset
    minute = ev.ts_ms // BUCKET_MS
    state.seen[ev.event_id] = (ev.partition, ev.offset, minute)
    state.counted += 1
    if ev.ts_ms > state.last_ms:
        state.last_ms = ev.ts_ms
    row = state.buckets.get(minute)
    if row is None:
        row = state.buckets[minute] = [0] * N_TYPES
    row[ev.etype] += 1
    if ev.etype in _RECENT_TYPES:
        # insort keeps equal timestamps in arrival order, like the trainer's stable sort.
        insort(state.recent, (ev.ts_ms, ev.item_id), key=lambda pair: pair[0])
        if len(state.recent) > RECENT_ITEMS_LEN:
            del state.recent[: len(state.recent) - RECENT_ITEMS_LEN]
        cats = state.categories.get(minute)
        if cats is None:
            cats = state.categories[minute] = {}
        cats[category] = cats.get(category, 0) + 1
    return Outcome.NEW


def prune_user(state: UserState, limits: DedupeLimits) -> None:
    """Drop what no window can count any more and what falls out of the de-duplication window."""
    if state.last_ms < 0:
        return
    ref = state.last_ms // BUCKET_MS
    for minute in [m for m in state.buckets if ref - m >= _USER_HORIZON]:
        del state.buckets[minute]
    for minute in [m for m in state.categories if ref - m >= _CATEGORY_HORIZON]:
        del state.categories[minute]
    seen = state.seen
    excess = len(seen) - limits.max_events
    stale = [eid for eid, (_, _, minute) in seen.items() if ref - minute >= limits.window_minutes]
    for eid in stale:
        del seen[eid]
    excess -= len(stale)
    if excess > 0:
        # dicts keep insertion order: the first keys are the ids read longest ago.
        for eid in list(seen)[:excess]:
            del seen[eid]


def windowed_counts(
    buckets: dict[int, list[int]], ref_minute: int, windows: tuple[int, ...], n_types: int
) -> list[int]:
    """Per-minute count rows summed over each trailing window (in minutes) ending at ``ref_minute``:
    ``n_types`` counts for the first window, then for the second, ..."""
    counts = [0] * (len(windows) * n_types)
    for minute, row in buckets.items():
        age = ref_minute - minute
        for w, length in enumerate(windows):
            if age < length:
                base = w * n_types
                for t in range(n_types):
                    counts[base + t] += row[t]
    return counts


def user_features(state: UserState) -> UserFeatures:
    ref = state.last_ms // BUCKET_MS
    counts = windowed_counts(state.buckets, ref, tuple(USER_WINDOWS.values()), N_TYPES)
    totals: dict[str, int] = {}
    for minute, cats in state.categories.items():
        if ref - minute < _CATEGORY_HORIZON:
            for name, n in cats.items():
                totals[name] = totals.get(name, 0) + n
    top = min(totals, key=lambda name: (-totals[name], name)) if totals else None
    recent = tuple(item for _, item in reversed(state.recent))
    return UserFeatures(tuple(counts), recent, top, state.last_ms)


# ---------------------------------------------------------------------------------------------------- items


@dataclass(frozen=True, slots=True)
class ItemEntry:
    """One de-duplicated event as forwarded to the item's partition of the by-item topic."""

    item_id: str
    etype: int
    ts_ms: int
    offset: int  # offset in the source partition of the bundle that carries it


@dataclass(slots=True)
class ItemState:
    last_ms: int = -1
    counted: int = 0
    buckets: dict[int, list[int]] = field(default_factory=dict)  # minute -> count per ITEM_COUNTED_TYPES
    watermarks: dict[int, int] = field(default_factory=dict)  # source partition -> highest applied offset


@dataclass(frozen=True, slots=True)
class ItemFeatures:
    counts: tuple[int, ...]  # aligned with streamrec.features.ITEM_COUNT_FEATURES
    ctr_24h: float
    trending: float
    popularity_24h: float  # trending-weighted events over 24 h: the popularity fallback's score
    last_event_ms: int


def apply_item_entry(state: ItemState, source_partition: int, entry: ItemEntry) -> bool:
    """Apply unless the source offset is at or below the partition's watermark; True when applied."""
    if entry.offset <= state.watermarks.get(source_partition, -1):
        return False
    state.watermarks[source_partition] = entry.offset
    state.counted += 1
    if entry.ts_ms > state.last_ms:
        state.last_ms = entry.ts_ms
    slot = ITEM_SLOT[entry.etype]
    if slot >= 0:
        minute = entry.ts_ms // BUCKET_MS
        row = state.buckets.get(minute)
        if row is None:
            row = state.buckets[minute] = [0] * _N_ITEM
        row[slot] += 1
    return True


def prune_item(state: ItemState) -> None:
    if state.last_ms < 0:
        return
    ref = state.last_ms // BUCKET_MS
    for minute in [m for m in state.buckets if ref - m >= _ITEM_HORIZON]:
        del state.buckets[minute]


def item_features(state: ItemState) -> ItemFeatures:
    counts = windowed_counts(state.buckets, state.last_ms // BUCKET_MS, tuple(ITEM_WINDOWS.values()), _N_ITEM)
    by_window = {name: counts[w * _N_ITEM : (w + 1) * _N_ITEM] for w, name in enumerate(ITEM_WINDOWS)}
    day, hour = by_window["24h"], by_window["1h"]
    views, clicks = day[ITEM_COUNTED_TYPES.index("view")], day[ITEM_COUNTED_TYPES.index("click")]
    weighted_day = sum(w * n for w, n in zip(_ITEM_WEIGHTS, day, strict=True))
    weighted_hour = sum(w * n for w, n in zip(_ITEM_WEIGHTS, hour, strict=True))
    return ItemFeatures(
        counts=tuple(counts),
        ctr_24h=clicks / views if views else 0.0,
        trending=trending_score(weighted_hour, weighted_day),
        popularity_24h=weighted_day,
        last_event_ms=state.last_ms,
    )


# ---------------------------------------------------------------------------------------------------- codecs
# Compact JSON: the changelog carries one message per written key, so size is throughput.


def dump_user(state: UserState) -> bytes:
    payload = {
        "v": STATE_FORMAT,
        "l": state.last_ms,
        "n": state.counted,
        "r": state.recent,
        "b": [[m, *row] for m, row in state.buckets.items()],
        "c": [[m, cats] for m, cats in state.categories.items()],
        "s": [[eid, p, o, m] for eid, (p, o, m) in state.seen.items()],
        "w": [[p, o] for p, o in state.watermarks.items()],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _payload(raw: bytes, kind: str) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"corrupt {kind} state: {exc}") from None
    if not isinstance(payload, dict) or payload.get("v") != STATE_FORMAT:
        raise DataError(f"{kind} state has an unsupported format (expected v={STATE_FORMAT})")
    return payload


def load_user(raw: bytes) -> UserState:
    p = _payload(raw, "user")
    try:
        return UserState(
            last_ms=int(p["l"]),
            counted=int(p["n"]),
            recent=[(int(ts), str(item)) for ts, item in p["r"]],
            buckets={int(row[0]): [int(x) for x in row[1:]] for row in p["b"]},
            categories={int(m): {str(k): int(v) for k, v in cats.items()} for m, cats in p["c"]},
            seen={int(e): (int(part), int(off), int(m)) for e, part, off, m in p["s"]},
            watermarks={int(part): int(off) for part, off in p["w"]},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"corrupt user state: {exc!r}") from None


def dump_item(state: ItemState) -> bytes:
    payload = {
        "v": STATE_FORMAT,
        "l": state.last_ms,
        "n": state.counted,
        "b": [[m, *row] for m, row in state.buckets.items()],
        "w": [[p, o] for p, o in state.watermarks.items()],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def load_item(raw: bytes) -> ItemState:
    p = _payload(raw, "item")
    try:
        return ItemState(
            last_ms=int(p["l"]),
            counted=int(p["n"]),
            buckets={int(row[0]): [int(x) for x in row[1:]] for row in p["b"]},
            watermarks={int(part): int(off) for part, off in p["w"]},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"corrupt item state: {exc!r}") from None

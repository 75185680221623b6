"""Per-user and per-item streaming state: plain data and pure functions (no Kafka, Redis or Faust here).

Feature semantics are those of :mod:`streamrec.features`: trailing event-time windows at one-minute
resolution ending at the entity's latest event. An event at minute ``m`` counts in window ``W`` as of
the entity's latest minute ``r`` when ``r - m < W``.

Idempotence lives in the state itself, so that counters and the de-duplication marker change in one
changelog write:

* :class:`UserState` remembers recent event ids with the source (partition, offset) they were read at and
  the minute they were read (the message's Kafka timestamp: a client's clock cannot move it, so one event
  stamped far in the future cannot make the window forget every id and let later duplicates count),
  and, per source partition, the offsets it has been through (its coverage: :func:`cover`). An id seen at the
  *same* position is a re-read after a crash (its counters are already in; its side effects are redone);
  at a *different* position it is a true duplicate (dropped). An unknown id at a covered offset was
  applied once and has since left the bounded window (stale: not counted again, not forwarded).
* :class:`ItemState` keeps a coverage per source partition: the source offsets whose entries for this
  item are applied. Events re-forwarded after a crash carry covered offsets and are skipped.

Coverage is a set of offset ranges, not a single high watermark, because a partition is not always read
in offset order: Faust can drop fetched messages around a rebalance (re-read later by
:mod:`streams.offset_repair`) or hand over a prefetched message ahead of the re-read from the committed
offset. An offset skipped that way and read after later ones is uncovered, so it is applied, not mistaken
for a repeat.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_right, insort
from collections.abc import Iterable, Sequence
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

STATE_FORMAT = 3
#: Format 2 wrote the remembered event ids as one [id, partition, offset, minute] list each; format 3 packs
#: them (ids as one base64 blob, offsets and minutes as differences, partitions run-length encoded): under a
#: third of the bytes, and a user's state is written once per batch that touches it. Both are read.
ID_LIST_FORMAT = 2
#: Format 1 kept one high watermark per source partition ("everything at or below was applied"); it is read
#: as the coverage of the range up to that watermark.
WATERMARK_FORMAT = 1
READABLE_FORMATS = (STATE_FORMAT, ID_LIST_FORMAT, WATERMARK_FORMAT)
ID_BYTES = 16  # an event id is a UUID's 128-bit integer
#: Most offset ranges kept per source partition; beyond, the two oldest are merged (the gap between them is
#: taken as covered). A message read out of order further back than this many ranges would be skipped.
MAX_SPANS = 64
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
_INF = 1 << 62


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
    read_ms: int = -1  # the message's Kafka timestamp (epoch ms); -1: unknown, the event time stands in

    @property
    def read_minute(self) -> int:
        return (self.read_ms if self.read_ms >= 0 else self.ts_ms) // BUCKET_MS


@dataclass(frozen=True, slots=True)
class DedupeLimits:
    max_events: int = 1000
    window_minutes: int = 7 * 24 * 60


Span = tuple[int, int]  # inclusive offset range (lo, hi)


def is_covered(spans: list[Span] | None, offset: int) -> bool:
    if not spans:
        return False
    k = bisect_right(spans, (offset, _INF)) - 1
    return k >= 0 and spans[k][1] >= offset


def cover(spans: list[Span], lo: int, hi: int) -> bool:
    """Add ``[lo, hi]`` to ``spans`` (sorted, disjoint, non-adjacent ranges); True when anything was added."""
    k = bisect_right(spans, (lo, _INF))
    if k and spans[k - 1][1] >= hi:
        return False  # inside one range already
    start = k - 1 if k and spans[k - 1][1] >= lo - 1 else k
    end = k
    while end < len(spans) and spans[end][0] <= hi + 1:
        end += 1
    if start < end:
        lo, hi = min(lo, spans[start][0]), max(hi, spans[end - 1][1])
    spans[start:end] = [(lo, hi)]
    if len(spans) > MAX_SPANS:
        spans[0:2] = [(spans[0][0], spans[1][1])]
    return True


def cover_all(coverage: dict[int, list[Span]], partition: int, spans: Iterable[Span]) -> bool:
    own = coverage.setdefault(partition, [])
    grew = False
    for lo, hi in spans:
        grew = cover(own, lo, hi) or grew
    return grew


def spans_holding(spans: Sequence[Span], offsets: Iterable[int]) -> list[Span]:
    """Those of ``spans`` (sorted, disjoint) that hold at least one of ``offsets``, in order. Raises
    ValueError for an offset outside every span."""
    picked: set[int] = set()
    for o in offsets:
        k = bisect_right(spans, (o, _INF)) - 1
        if k < 0 or spans[k][1] < o:
            raise ValueError(f"offset {o} is outside the batch's ranges")
        picked.add(k)
    return [spans[k] for k in sorted(picked)]


def runs(offsets: Iterable[int]) -> list[Span]:
    """Consecutive runs of ``offsets``: the ranges a batch read of one partition covers."""
    out: list[Span] = []
    for o in sorted(set(offsets)):
        if out and out[-1][1] == o - 1:
            out[-1] = (out[-1][0], o)
        else:
            out.append((o, o))
    return out


# ---------------------------------------------------------------------------------------------------- users


@dataclass(slots=True)
class UserState:
    last_ms: int = -1  # latest event time seen (epoch ms); -1: none
    counted: int = 0  # events counted, duplicates excluded
    # (ts_ms, item_id) of the latest non-dislike events, ascending by time (ties: arrival order).
    recent: list[tuple[int, str]] = field(default_factory=list)
    buckets: dict[int, list[int]] = field(default_factory=dict)  # minute -> count per EVENT_TYPES
    categories: dict[int, dict[str, int]] = field(default_factory=dict)  # minute -> non-dislike events per category
    seen: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # event id -> (partition, offset, read minute)
    covered: dict[int, list[Span]] = field(default_factory=dict)  # source partition -> offsets gone through


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
        # A duplicate's position is covered too: should its id be evicted before a re-read, the re-read
        # is then recognised as stale instead of being counted.
        cover(state.covered.setdefault(ev.partition, []), ev.offset, ev.offset)
        return Outcome.DUPLICATE
    # A covered offset has been through here once: an unknown id there was evicted from the window.
    if is_covered(state.covered.get(ev.partition), ev.offset):
        return Outcome.STALE
    cover(state.covered.setdefault(ev.partition, []), ev.offset, ev.offset)
    minute = ev.ts_ms // BUCKET_MS
    state.seen[ev.event_id] = (ev.partition, ev.offset, ev.read_minute)
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
    # By read time, not event time: an event stamped years ahead must not expire the ids of the others. The
    # latest read comes from the ids kept rather than a stored field: the time bound never drops it, and should
    # the count bound drop it (ids read out of order across partitions), the window only gets longer.
    now = max((minute for _, _, minute in seen.values()), default=ref)
    stale = [eid for eid, (_, _, minute) in seen.items() if now - minute >= limits.window_minutes]
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
    covered: dict[int, list[Span]] = field(default_factory=dict)  # source partition -> offsets applied


@dataclass(frozen=True, slots=True)
class ItemFeatures:
    counts: tuple[int, ...]  # aligned with streamrec.features.ITEM_COUNT_FEATURES
    ctr_24h: float
    trending: float
    popularity_24h: float  # trending-weighted events over 24 h: the popularity fallback's score
    last_event_ms: int


def apply_item_entry(state: ItemState, source_partition: int, entry: ItemEntry) -> bool:
    """Apply unless the entry's source offset is covered already; True when applied."""
    spans = state.covered.setdefault(source_partition, [])
    if is_covered(spans, entry.offset):
        return False
    cover(spans, entry.offset, entry.offset)
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
        "s": _dump_seen(state.seen),
        "k": _dump_coverage(state.covered),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _dump_seen(seen: dict[int, tuple[int, int, int]]) -> dict[str, Any]:
    """``{"i": base64 of the ids, "p": [[partition, run length], ...], "o": offset steps, "m": minute steps}``,
    in insertion order (count-based pruning drops the first)."""
    partitions: list[list[int]] = []
    offset_steps: list[int] = []
    minute_steps: list[int] = []
    last_offset = last_minute = 0
    for partition, offset, minute in seen.values():
        if partitions and partitions[-1][0] == partition:
            partitions[-1][1] += 1
        else:
            partitions.append([partition, 1])
        offset_steps.append(offset - last_offset)
        minute_steps.append(minute - last_minute)
        last_offset, last_minute = offset, minute
    ids = b"".join(eid.to_bytes(ID_BYTES, "big") for eid in seen)
    return {"i": base64.b64encode(ids).decode("ascii"), "p": partitions, "o": offset_steps, "m": minute_steps}


def _load_seen(payload: dict[str, Any]) -> dict[int, tuple[int, int, int]]:
    raw = payload["s"]
    if payload["v"] != STATE_FORMAT:
        return {int(e): (int(part), int(off), int(m)) for e, part, off, m in raw}
    try:
        ids = base64.b64decode(raw["i"], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad event ids: {exc}") from None
    n = len(ids) // ID_BYTES
    offset_steps, minute_steps = raw["o"], raw["m"]
    partitions = [int(part) for part, count in raw["p"] for _ in range(int(count))]
    if len(ids) % ID_BYTES or not n == len(partitions) == len(offset_steps) == len(minute_steps):
        raise ValueError("event ids, partitions, offsets and minutes differ in number")
    seen: dict[int, tuple[int, int, int]] = {}
    offset = minute = 0
    for k in range(n):
        offset += int(offset_steps[k])
        minute += int(minute_steps[k])
        seen[int.from_bytes(ids[k * ID_BYTES : (k + 1) * ID_BYTES], "big")] = (partitions[k], offset, minute)
    return seen


def _payload(raw: bytes, kind: str) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"corrupt {kind} state: {exc}") from None
    if not isinstance(payload, dict) or payload.get("v") not in READABLE_FORMATS:
        raise DataError(f"{kind} state has an unsupported format (expected v={STATE_FORMAT})")
    return payload


def _dump_coverage(covered: dict[int, list[Span]]) -> list[list[int]]:
    """``[[partition, lo, hi, lo, hi, ...], ...]``."""
    return [[p, *(o for span in spans for o in span)] for p, spans in covered.items() if spans]


def _load_coverage(payload: dict[str, Any]) -> dict[int, list[Span]]:
    if payload["v"] == WATERMARK_FORMAT:
        return {int(part): [(0, int(off))] for part, off in payload["w"]}
    out: dict[int, list[Span]] = {}
    for row in payload["k"]:
        bounds = [int(x) for x in row[1:]]
        if len(bounds) % 2 or any(b < a for a, b in zip(bounds[::2], bounds[1::2], strict=True)):
            raise ValueError(f"bad offset ranges for partition {row[0]}")
        out[int(row[0])] = list(zip(bounds[::2], bounds[1::2], strict=True))
    return out


def load_user(raw: bytes) -> UserState:
    p = _payload(raw, "user")
    try:
        return UserState(
            last_ms=int(p["l"]),
            counted=int(p["n"]),
            recent=[(int(ts), str(item)) for ts, item in p["r"]],
            buckets={int(row[0]): [int(x) for x in row[1:]] for row in p["b"]},
            categories={int(m): {str(k): int(v) for k, v in cats.items()} for m, cats in p["c"]},
            seen=_load_seen(p),
            covered=_load_coverage(p),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"corrupt user state: {exc!r}") from None


def dump_item(state: ItemState) -> bytes:
    payload = {
        "v": STATE_FORMAT,
        "l": state.last_ms,
        "n": state.counted,
        "b": [[m, *row] for m, row in state.buckets.items()],
        "k": _dump_coverage(state.covered),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def load_item(raw: bytes) -> ItemState:
    p = _payload(raw, "item")
    try:
        return ItemState(
            last_ms=int(p["l"]),
            counted=int(p["n"]),
            buckets={int(row[0]): [int(x) for x in row[1:]] for row in p["b"]},
            covered=_load_coverage(p),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"corrupt item state: {exc!r}") from None

"""Point-in-time user features from the archive, vectorised: recent items and windowed event counts.

Both are computed "strictly before" a reference: for a training example, the events of the same user that
come before the example's event in time order; for a request at time ``T``, the events with timestamp < T.
Definitions follow :mod:`streamrec.features` exactly:

* recent items: the user's last ``RECENT_ITEMS_LEN`` items over events whose type is not ``dislike``,
  most recent first, padded with 0;
* ``<type>_count_<window>``: events of that type with ``minute(ref) - minute(t) < W`` (one-minute buckets),
  fed to the ranker raw (it applies log1p itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamrec.features import (
    BUCKET_MS,
    EVENT_TYPES,
    RECENT_ITEM_EVENT_TYPES,
    RECENT_ITEMS_LEN,
    USER_COUNT_FEATURES,
    USER_WINDOWS,
)
from trainer.data.loading import DISLIKE, Events

#: Event types that feed the recent-items sequence (shared with the streaming worker).
RECENT_ITEM_TYPES: tuple[str, ...] = RECENT_ITEM_EVENT_TYPES
_TS_BITS = 42  # epoch ms < 2**42 until the year 2109


@dataclass
class UserHistory:
    """Events ordered by (user, time), with the helpers to query them point-in-time."""

    n_users: int
    key: np.ndarray  # int64 [n], user << 42 | ts_ms, sorted
    user_start: np.ndarray  # int64 [n_users + 2], first position of each user in the sorted order
    rank_of_event: np.ndarray  # int64 [n], position of time-ordered event j in the user order
    type_cumsum: np.ndarray  # int32 [n + 1, n_types], events of each type before each position
    seq_items: np.ndarray  # int64 [m], items of non-dislike events in (user, time) order
    seq_before: np.ndarray  # int64 [n + 1], non-dislike events before each position (index into seq_items)

    @classmethod
    def build(cls, events: Events, n_users: int) -> UserHistory:
        order = np.lexsort((np.arange(len(events)), events.user))
        users = events.user[order]
        key = (users << _TS_BITS) | events.ts_ms[order]
        rank = np.empty(len(events), dtype=np.int64)
        rank[order] = np.arange(len(events))
        user_start = np.searchsorted(users, np.arange(n_users + 2)).astype(np.int64)
        onehot = np.zeros((len(events) + 1, len(EVENT_TYPES)), dtype=np.int32)
        onehot[np.arange(1, len(events) + 1), events.etype[order]] = 1
        type_cumsum = np.cumsum(onehot, axis=0, dtype=np.int32)
        counted = events.etype[order] != DISLIKE
        seq_before = np.concatenate([[0], np.cumsum(counted)]).astype(np.int64)
        return cls(
            n_users=n_users,
            key=key,
            user_start=user_start,
            rank_of_event=rank,
            type_cumsum=type_cumsum,
            seq_items=events.item[order][counted],
            seq_before=seq_before,
        )

    def position_before_time(self, user: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
        """Position (in user order) of the first event of ``user`` at or after ``ts_ms``.  -> int64 [q]"""
        return np.searchsorted(self.key, (user.astype(np.int64) << _TS_BITS) | ts_ms, side="left")

    def recent_items(self, user: np.ndarray, upper: np.ndarray, length: int = RECENT_ITEMS_LEN) -> np.ndarray:
        """Last ``length`` non-dislike items before position ``upper``, newest first.  -> int64 [q, length]"""
        lo = self.seq_before[self.user_start[user]]
        hi = self.seq_before[upper]
        pos = hi[:, None] - 1 - np.arange(length)[None, :]
        valid = pos >= lo[:, None]
        out = self.seq_items[np.where(valid, pos, 0)] if len(self.seq_items) else np.zeros_like(pos)
        return np.where(valid, out, 0).astype(np.int64)

    def counts(self, user: np.ndarray, upper: np.ndarray, ref_ts_ms: np.ndarray) -> np.ndarray:
        """Raw USER_COUNT_FEATURES before position ``upper`` as of ``ref_ts_ms``.  -> float32 [q, U]"""
        ref_minute = ref_ts_ms // BUCKET_MS
        out = np.empty((len(user), len(USER_COUNT_FEATURES)), dtype=np.float32)
        col = 0
        at_upper = self.type_cumsum[upper]
        for window in USER_WINDOWS.values():
            # minute(ref) - minute(t) < W  <=>  t >= (minute(ref) - W + 1) * 1 min
            lower = self.position_before_time(user, (ref_minute - window + 1) * BUCKET_MS)
            lower = np.minimum(lower, upper)
            diff = at_upper - self.type_cumsum[lower]
            out[:, col : col + len(EVENT_TYPES)] = diff
            col += len(EVENT_TYPES)
        return out

    # Convenience wrappers -------------------------------------------------------------------------

    def for_events(self, events: Events, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(recent items [q, R], raw counts [q, U]) strictly before each of the given events."""
        upper = self.rank_of_event[rows]
        user = events.user[rows]
        return self.recent_items(user, upper), self.counts(user, upper, events.ts_ms[rows])

    def at_time(self, user: np.ndarray, ts_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(recent items [q, R], raw counts [q, U]) from the events before ``ts_ms``."""
        upper = self.position_before_time(user, ts_ms)
        return self.recent_items(user, upper), self.counts(user, upper, ts_ms)


def naive_counts(events: Events, user: int, ts_ms: int, upper_rank: int | None = None) -> np.ndarray:
    """Reference implementation (loops) of the count features for one user at ``ts_ms``; for tests."""
    out = np.zeros(len(USER_COUNT_FEATURES), dtype=np.float32)
    ref_minute = ts_ms // BUCKET_MS
    idx = np.flatnonzero(events.user == user)
    for j in idx:
        if upper_rank is None and events.ts_ms[j] >= ts_ms:
            continue
        if upper_rank is not None and j >= upper_rank:
            continue
        age = ref_minute - events.ts_ms[j] // BUCKET_MS
        for w, window in enumerate(USER_WINDOWS.values()):
            if age < window:
                out[w * len(EVENT_TYPES) + int(events.etype[j])] += 1
    return out

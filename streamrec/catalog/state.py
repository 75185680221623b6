"""The catalog as a last-writer-wins map: a pure reducer over upserts and tombstones.

Each id keeps one record, the greatest by :func:`version_key`: the latest ``updated_at``; at equal
``updated_at`` a tombstone beats an upsert (a delete is never undone by a same-instant write); between two
different upserts at the same instant, the greater canonical JSON wins. That order is total, so merging is
a max: idempotent, commutative and associative. Any permutation or duplication of the same records (replays,
at-least-once delivery, several writers) gives the same catalog. Tombstones stay in the state, so a stale
upsert replayed after a delete does not bring the item back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from streamrec.catalog.models import CatalogItem, CatalogRecord, ItemTombstone, UserProfile, UserTombstone

R = TypeVar("R", CatalogItem | ItemTombstone, UserProfile | UserTombstone)

VersionKey = tuple[int, int, bytes]


def is_tombstone(record: CatalogRecord) -> bool:
    return isinstance(record, ItemTombstone | UserTombstone)


def version_key(record: CatalogRecord) -> VersionKey:
    """The total order of records under one id: (updated_at ms, tombstone?, canonical JSON)."""
    return (record.updated_ms, 1 if is_tombstone(record) else 0, canonical_bytes(record))


def canonical_bytes(record: CatalogRecord) -> bytes:
    """Sorted-key JSON of the record's full content (defaults included), for deterministic tie-breaks."""
    content = record.model_dump(mode="json", exclude_none=True)
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def newer(current: R | None, incoming: R) -> R:
    """The record that wins under one id (pure)."""
    if current is None:
        return incoming
    # The canonical JSON is only needed (and built) to break a tie of the cheap part of the key.
    cheap_in = (incoming.updated_ms, is_tombstone(incoming))
    cheap_cur = (current.updated_ms, is_tombstone(current))
    if cheap_in != cheap_cur:
        return incoming if cheap_in > cheap_cur else current
    return incoming if canonical_bytes(incoming) > canonical_bytes(current) else current


class Outcome(StrEnum):
    """What applying one record did to the state."""

    CREATED = "created"  # no record under the id before
    UPDATED = "updated"  # a newer upsert replaced the previous record
    DELETED = "deleted"  # a newer tombstone replaced a live record
    UNCHANGED = "unchanged"  # the record was older than, or the same as, what the state holds


@dataclass
class CatalogState(Generic[R]):
    """Records by id, the winner of :func:`newer` for each (tombstones included)."""

    records: dict[str, R] = field(default_factory=dict)

    def apply(self, record: R) -> Outcome:
        current = self.records.get(record.key)
        winner = newer(current, record)
        if winner is current:
            return Outcome.UNCHANGED
        self.records[record.key] = winner
        if is_tombstone(winner):
            return Outcome.DELETED if current is not None and not is_tombstone(current) else Outcome.UNCHANGED
        return Outcome.CREATED if current is None or is_tombstone(current) else Outcome.UPDATED

    def apply_all(self, records: Iterable[R]) -> dict[Outcome, int]:
        counts = dict.fromkeys(Outcome, 0)
        for record in records:
            counts[self.apply(record)] += 1
        return counts

    def live(self) -> dict[str, R]:
        """The records that are not deleted, by id (unavailable items are live: they stay in the catalog)."""
        return {key: rec for key, rec in self.records.items() if not is_tombstone(rec)}

    def tombstones(self) -> dict[str, R]:
        return {key: rec for key, rec in self.records.items() if is_tombstone(rec)}

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[R]:
        return iter(self.records.values())


ItemState = CatalogState[CatalogItem | ItemTombstone]
UserState = CatalogState[UserProfile | UserTombstone]


def reduce_records(records: Iterable[R]) -> dict[str, R]:
    """The final record per id, tombstones included (pure)."""
    state: CatalogState[R] = CatalogState()
    state.apply_all(records)
    return state.records


def merge_states(left: Mapping[str, R], right: Mapping[str, R]) -> dict[str, R]:
    """Two reduced catalogs combined into one, as if every record of both had been applied (pure)."""
    out = dict(left)
    for key, record in right.items():
        out[key] = newer(out.get(key), record)
    return out

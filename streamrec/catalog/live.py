"""The live catalog in Redis: from the catalog sync (one writer) to every serving process (readers).

The sync turns catalog records into serving entries for one export version. An item the export does not
know gets an index after the export's last one and its vectors (the content-only item tower and its ranker
content); an item made unavailable, or deleted, is published as not available; a known item made available
again is published as available with no vectors (the export's own rows stay). Readers — every Triton model
instance of every layout, in every pod — apply the entries to their in-memory FAISS index, item-feature
cache and availability mask, so an item appears or disappears everywhere without a restart.

Layout, under ``{prefix}:live:{export version}`` (vectors belong to one export's item tower):

* ``state`` hash: item id -> its latest encoded :class:`LiveItem` — the whole live catalog, read on start;
* ``changes`` stream, trimmed to about ``max_changes`` entries: one entry per change, field ``item``;
* ``index`` hash: item id -> the index handed out; ``next_index``: the last index handed out.

An export version's keys are deleted once that version is gone from the export root (the trainer's
retention removed it): nothing can serve it any more (:func:`retire_versions`).

A hash plus a trimmed stream, not a stream alone: memory stays bounded however long the catalog changes,
a reader started at any time still gets everything (the hash), and a running reader re-reads only the items
that changed. A reader that fell behind the trimmed part of the stream reads the hash again.

The single writer applies the catalog's last-writer-wins order before publishing (a replay from the start of
the compacted topics publishes the same entries again: idempotent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np

from streamrec.errors import DataError

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "streamrec"
DEFAULT_MAX_CHANGES: Final = 100_000
_HEADER_LEN_BYTES: Final = 4
_START: Final = "0-0"

# Hands out one index per item id, atomically even with several writers: HGET, else INCR + HSETNX.
_INDEX_SCRIPT: Final = """
local got = redis.call('HGET', KEYS[1], ARGV[1])
if got then return tonumber(got) end
local floor = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < floor then redis.call('SET', KEYS[2], floor) end
local idx = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], idx)
return idx
"""


@dataclass(frozen=True, slots=True)
class LiveKeys:
    """The Redis keys of one export version's live catalog."""

    base: str

    @classmethod
    def for_version(cls, version: str, prefix: str = DEFAULT_PREFIX) -> LiveKeys:
        if not version:
            raise DataError("the live catalog needs an export version")
        return cls(f"{prefix}:live:{version}")

    @property
    def state(self) -> str:
        return f"{self.base}:state"

    @property
    def changes(self) -> str:
        return f"{self.base}:changes"

    @property
    def index(self) -> str:
        return f"{self.base}:index"

    @property
    def next_index(self) -> str:
        return f"{self.base}:next_index"

    @property
    def all(self) -> tuple[str, str, str, str]:
        return (self.state, self.changes, self.index, self.next_index)


#: The last part of each key of a version's live catalog ("state", "changes", ...).
_KEY_PARTS: Final = frozenset(key.rpartition(":")[2] for key in LiveKeys("").all)


def live_versions(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> set[str]:
    """The export versions that have live catalog keys under ``prefix``."""
    head = f"{prefix}:live:"
    found: set[str] = set()
    for raw in client.scan_iter(match=f"{head}*", count=1000):
        name = _str(raw)[len(head) :]
        version, _, part = name.rpartition(":")
        if version and part in _KEY_PARTS:
            found.add(version)
    return found


def retire_versions(client: redis.Redis, keep: Iterable[str], prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete the live catalogs of every export version not in ``keep``; returns the versions deleted."""
    kept = set(keep)
    gone = sorted(live_versions(client, prefix) - kept)
    for version in gone:
        client.delete(*LiveKeys.for_version(version, prefix).all)
    return gone


@dataclass(frozen=True, slots=True)
class LiveVectors:
    """What serving needs of an item the export does not hold (float32, one row each)."""

    embedding: np.ndarray  # [D] item-tower vector, the FAISS row
    dense: np.ndarray  # [Q] the ranker's item dense features
    text: np.ndarray  # [T] text embedding as the ranker reads it
    image: np.ndarray  # [I] image embedding (I may be 0)

    def parts(self) -> tuple[np.ndarray, ...]:
        return (self.embedding, self.dense, self.text, self.image)


@dataclass(frozen=True, slots=True)
class LiveItem:
    """One item's serving state in one export version's numbering (index 1-based, as in the export)."""

    item_id: str
    index: int
    available: bool
    updated_ms: int
    category_idx: int = 0  # position in the export's categories.json; 0: unknown category
    vectors: LiveVectors | None = None  # None: the export's own rows are kept


def encode_item(item: LiveItem) -> bytes:
    """A JSON header (with the vector widths) and the float32 vectors, concatenated."""
    parts = item.vectors.parts() if item.vectors is not None else ()
    header = json.dumps(
        {
            "item_id": item.item_id,
            "index": item.index,
            "available": item.available,
            "updated_ms": item.updated_ms,
            "category_idx": item.category_idx,
            "dims": [int(p.shape[0]) for p in parts],
        },
        separators=(",", ":"),
    ).encode()
    body = b"".join(np.ascontiguousarray(p, dtype="<f4").tobytes() for p in parts)
    return len(header).to_bytes(_HEADER_LEN_BYTES, "big") + header + body


def decode_item(raw: bytes) -> LiveItem:
    """The inverse of :func:`encode_item`; :class:`DataError` on anything else."""
    try:
        n = int.from_bytes(raw[:_HEADER_LEN_BYTES], "big")
        head: dict[str, Any] = json.loads(raw[_HEADER_LEN_BYTES : _HEADER_LEN_BYTES + n])
        dims = [int(d) for d in head["dims"]]
        body = np.frombuffer(raw[_HEADER_LEN_BYTES + n :], dtype="<f4")
        if (dims and len(dims) != 4) or int(body.shape[0]) != sum(dims):
            raise ValueError(f"vector widths {dims} do not match {body.shape[0]} values")
        vectors = None
        if dims:
            cuts = np.cumsum(dims)[:-1]
            embedding, dense, text, image = (p.astype(np.float32) for p in np.split(body, cuts))
            vectors = LiveVectors(embedding, dense, text, image)
        return LiveItem(
            item_id=str(head["item_id"]),
            index=int(head["index"]),
            available=bool(head["available"]),
            updated_ms=int(head["updated_ms"]),
            category_idx=int(head["category_idx"]),
            vectors=vectors,
        )
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not a live catalog entry: {exc}") from exc


class LiveCatalogWriter:
    """Publishes entries for one export version (the catalog sync's side)."""

    def __init__(
        self, client: redis.Redis, keys: LiveKeys, n_export_items: int, max_changes: int = DEFAULT_MAX_CHANGES
    ) -> None:
        self.client = client
        self.keys = keys
        self.n_export_items = n_export_items
        self.max_changes = max_changes
        self._index_script = client.register_script(_INDEX_SCRIPT)

    def index_for(self, item_id: str) -> int:
        """The index of an item the export does not know: the same id always gets the same index."""
        keys = [self.keys.index, self.keys.next_index]
        return int(self._index_script(keys=keys, args=[item_id, self.n_export_items]))

    def publish(self, items: Sequence[LiveItem]) -> None:
        """Store the entries and announce them, in one round trip."""
        if not items:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys.state, mapping={item.item_id: encode_item(item) for item in items})
        for item in items:
            pipe.xadd(self.keys.changes, {"item": item.item_id}, maxlen=self.max_changes, approximate=True)
        pipe.execute()


class LiveCatalogReader:
    """Follows one export version's live catalog (a serving process's side). Not thread-safe: one poller."""

    def __init__(self, client: redis.Redis, keys: LiveKeys, batch: int = 1000) -> None:
        self.client = client
        self.keys = keys
        self.batch = batch
        self.cursor: str | None = None  # the last change applied; None: not bootstrapped yet

    def bootstrap(self) -> list[LiveItem]:
        """Everything published so far; changes after this call come from :meth:`poll`."""
        last = cast(list[Any], self.client.xrevrange(self.keys.changes, count=1))
        # Taken before the hash is read: a change racing the read is seen again by poll (applying twice is harmless).
        self.cursor = _str(last[0][0]) if last else _START
        return _decode_skipping(self.client.hscan_iter(self.keys.state, count=self.batch))

    def poll(self, block_ms: int = 100) -> list[LiveItem]:
        """The items changed since the last call (their latest entries), waiting up to ``block_ms`` for one
        (0: not at all). An entry that cannot be decoded is logged and left out, never the rest of the read."""
        if self.cursor is None:
            return self.bootstrap()
        block = block_ms if block_ms > 0 else None  # Redis reads BLOCK 0 as "wait forever"
        got = cast(list[Any], self.client.xread({self.keys.changes: self.cursor}, count=self.batch, block=block))
        if not got:
            return []
        entries = got[0][1]
        first_kept = cast(list[Any], self.client.xrange(self.keys.changes, count=1))
        if self.cursor != _START and first_kept and _newer(_str(first_kept[0][0]), self.cursor):
            return self.bootstrap()  # changes between our cursor and the stream's start were trimmed away
        self.cursor = _str(entries[-1][0])
        ids = list(dict.fromkeys(_str(fields[b"item"]) for _, fields in entries))
        values = cast(list[Any], self.client.hmget(self.keys.state, ids))
        return _decode_skipping((i, raw) for i, raw in zip(ids, values, strict=True) if raw is not None)


def _decode_skipping(pairs: Iterable[tuple[Any, bytes]]) -> list[LiveItem]:
    out = []
    for item_id, raw in pairs:
        try:
            out.append(decode_item(raw))
        except DataError as exc:
            log.warning("live catalog entry of %r left out: %s", _str(item_id), exc)
    return out


def _str(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _newer(a: str, b: str) -> bool:
    """Stream id ``a`` after ``b``."""
    ma, sa = (int(x) for x in a.split("-"))
    mb, sb = (int(x) for x in b.split("-"))
    return (ma, sa) > (mb, sb)


def latest_by_item(items: Iterable[LiveItem]) -> dict[str, LiveItem]:
    """One entry per item, the latest by ``updated_ms`` (ties: the later in the sequence)."""
    out: dict[str, LiveItem] = {}
    for item in items:
        current = out.get(item.item_id)
        if current is None or item.updated_ms >= current.updated_ms:
            out[item.item_id] = item
    return out

"""Per-user seen-item Bloom filters in a Redis-compatible server (RedisBloom, or a bitmap fallback)."""

from streamrec.bloom.base import BloomBackend
from streamrec.bloom.bitmap import BitmapBloomBackend
from streamrec.bloom.redisbloom import RedisBloomBackend
from streamrec.bloom.store import AsyncSeenItemStore, SeenItemStore, choose_backend

__all__ = [
    "AsyncSeenItemStore",
    "BitmapBloomBackend",
    "BloomBackend",
    "RedisBloomBackend",
    "SeenItemStore",
    "choose_backend",
]

"""Run Bloom backend commands against Redis: pipelined, sync (serving) or asyncio (streaming worker)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from streamrec.bloom.base import BloomBackend
from streamrec.bloom.bitmap import BitmapBloomBackend
from streamrec.bloom.redisbloom import RedisBloomBackend
from streamrec.errors import ConfigError, StoreUnavailableError
from streamrec.settings import BloomSettings, RedisSettings

BLOOM_MODULE = "bf"


def module_names(reply: Any) -> set[str]:
    names = set()
    for entry in reply or []:
        if isinstance(entry, dict):
            name = entry.get(b"name", entry.get("name"))
        else:
            pairs = dict(zip(entry[::2], entry[1::2], strict=False))
            name = pairs.get(b"name", pairs.get("name"))
        if name is not None:
            names.add(name.decode() if isinstance(name, bytes) else str(name))
    return names


def choose_backend(settings: BloomSettings, modules: set[str]) -> BloomBackend:
    """Pick the backend from the setting and the server's loaded modules."""
    if settings.backend == "redisbloom":
        if BLOOM_MODULE not in modules:
            raise ConfigError("the server has no 'bf' module loaded", source="STREAMREC_BLOOM_BACKEND=redisbloom")
        return RedisBloomBackend(settings)
    if settings.backend == "bitmap" or BLOOM_MODULE not in modules:
        return BitmapBloomBackend(settings)
    return RedisBloomBackend(settings)


def sync_client(settings: RedisSettings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.effective_url,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
    )


def async_client(settings: RedisSettings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.effective_url,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
    )


class SeenItemStore:
    """Synchronous store used by serving: one round trip per call."""

    def __init__(self, client: redis.Redis, backend: BloomBackend) -> None:
        self.client = client
        self.backend = backend

    @classmethod
    def connect(cls, redis_settings: RedisSettings, bloom_settings: BloomSettings) -> SeenItemStore:
        client = sync_client(redis_settings)
        try:
            modules = module_names(client.execute_command("MODULE", "LIST"))
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis at {redis_settings.effective_url} unreachable: {exc}") from None
        return cls(client, choose_backend(bloom_settings, modules))

    def add(self, items_by_user: Mapping[str, Sequence[str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for user_id, items in items_by_user.items():
            if items:
                for cmd in self.backend.add_commands(user_id, items):
                    pipe.execute_command(*cmd)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Bloom write failed: {exc}") from None

    def contains(self, user_id: str, items: Sequence[str]) -> list[bool]:
        if not items:
            return []
        try:
            reply = self.client.execute_command(*self.backend.check_command(user_id, items))
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Bloom check failed: {exc}") from None
        return self.backend.parse_check(reply, len(items))

    def memory_bytes(self, user_id: str) -> int:
        return int(self.client.execute_command(*self.backend.memory_command(user_id)) or 0)


class AsyncSeenItemStore:
    """asyncio store used by the streaming worker: batches of users in one pipelined round trip."""

    def __init__(self, client: aioredis.Redis, backend: BloomBackend) -> None:
        self.client = client
        self.backend = backend

    @classmethod
    async def connect(cls, redis_settings: RedisSettings, bloom_settings: BloomSettings) -> AsyncSeenItemStore:
        client = async_client(redis_settings)
        try:
            modules = module_names(await client.execute_command("MODULE", "LIST"))
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis at {redis_settings.effective_url} unreachable: {exc}") from None
        return cls(client, choose_backend(bloom_settings, modules))

    async def add(self, items_by_user: Mapping[str, Sequence[str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for user_id, items in items_by_user.items():
            if items:
                for cmd in self.backend.add_commands(user_id, items):
                    pipe.execute_command(*cmd)
        await pipe.execute()

    async def contains(self, user_id: str, items: Sequence[str]) -> list[bool]:
        if not items:
            return []
        reply = await self.client.execute_command(*self.backend.check_command(user_id, items))
        return self.backend.parse_check(reply, len(items))

    async def close(self) -> None:
        await self.client.aclose()

"""Backend on the RedisBloom module (``bf``): scalable filters managed by the server."""

from __future__ import annotations

from collections.abc import Sequence

from streamrec.bloom.base import BloomBackend, Command


class RedisBloomBackend(BloomBackend):
    name = "redisbloom"

    def add_commands(self, user_id: str, items: Sequence[str]) -> list[Command]:
        key = self.key(user_id)
        s = self.settings
        # BF.INSERT with CAPACITY/ERROR is BF.RESERVE (only when the key is absent) + BF.MADD in one
        # command: no race between workers and no "item exists" error to swallow.
        return [
            ("BF.INSERT", key, "CAPACITY", s.capacity, "ERROR", s.error_rate, "ITEMS", *items),
            ("EXPIRE", key, s.ttl_seconds),
        ]

    def check_command(self, user_id: str, items: Sequence[str]) -> Command:
        return ("BF.MEXISTS", self.key(user_id), *items)

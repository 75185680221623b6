"""The demo's orchestration: stack, data, training, serving, streaming, replay, then the showcase.

Components are driven through their CLI commands in subprocesses, so the core never imports an app
folder. Steps whose command is not installed are skipped with a note. Ctrl-C (or SIGTERM) stops what the
demo started: background processes first, then the stack components if the demo brought them up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.archive import read_interactions
from streamrec.artifacts import load_metadata, read_current, version_dir
from streamrec.client.admin import consumer_lag
from streamrec.demo import showcase
from streamrec.errors import ArtifactError, StreamrecError
from streamrec.security import hash_api_key
from streamrec.settings import FeastSettings, KafkaSettings, PathsSettings, RedisSettings, StackSettings
from streamrec.stack import LocalStack

TTY = sys.stdout.isatty()
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if TTY else ("", "", "")
DEMO_API_KEY = "demo-key"
# The API's and worker's own settings (STREAMREC_API_PORT, STREAMREC_STREAMS_WEB_PORT) pick the ports.
API_PORT = int(os.environ.get("STREAMREC_API_PORT", "8080"))
WORKER_WEB_PORT = int(os.environ.get("STREAMREC_STREAMS_WEB_PORT", "6066"))
WORKER_GROUP = os.environ.get("STREAMREC_STREAMS_APP_ID", "streamrec-worker")


def say(message: str) -> None:
    print(f"{BOLD}==> {message}{RESET}", flush=True)


def note(message: str) -> None:
    print(f"    {message}", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class DemoOptions:
    dataset: str = "ml-100k"
    replay_limit: int = 20_000
    retrain: bool = False
    wait: bool = True


@dataclass
class Background:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Demo:
    available: set[str]
    options: DemoOptions = field(default_factory=DemoOptions)
    stack: LocalStack = field(default_factory=LocalStack)
    kafka: KafkaSettings = field(default_factory=KafkaSettings.load)
    paths: PathsSettings = field(default_factory=PathsSettings.load)
    background: list[Background] = field(default_factory=list)
    started_stack: list[str] = field(default_factory=list)
    cli: Sequence[str] = (sys.executable, "-m", "streamrec.cli.main")

    @property
    def log_dir(self) -> Path:
        path = StackSettings.load().run_dir / "demo"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def dataset_root(self) -> Path:
        return self.paths.dataset_root(self.options.dataset)

    @property
    def child_env(self) -> dict[str, str]:
        return {
            "STREAMREC_API_API_KEYS": json.dumps([hash_api_key(DEMO_API_KEY, "pbkdf2_sha256")]),
            "STREAMREC_API_PORT": str(API_PORT),
            "STREAMREC_STREAMS_WEB_PORT": str(WORKER_WEB_PORT),
            "STREAMREC_STREAMS_CATALOG_PATH": str(self.dataset_root / "items.parquet"),
            # The web page's cards show the dataset's titles and categories.
            "STREAMREC_UI_CATALOG_PATH": str(self.dataset_root / "items.parquet"),
        }

    # -- process helpers -------------------------------------------------------------------------------
    def has(self, command: str) -> bool:
        if command in self.available:
            return True
        note(f"{DIM}skipped: the '{command}' command is not installed{RESET}")
        return False

    def streamrec(self, *args: str) -> None:
        """Run a CLI command in the foreground, its output (progress bars included) shown."""
        note(f"{DIM}$ streamrec {' '.join(args)}{RESET}")
        code = subprocess.call([*self.cli, *args], env={**os.environ, **self.child_env})
        if code != 0:
            raise StreamrecError(f"step 'streamrec {' '.join(args)}' failed with exit code {code}")

    def spawn(self, name: str, *args: str) -> Background:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as handle:
            proc = subprocess.Popen(
                [*self.cli, *args],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.child_env},
                start_new_session=True,
            )
        bg = Background(name, proc, log_path)
        self.background.append(bg)
        note(f"started {name} (pid {proc.pid}); log: {log_path}")
        return bg

    def check_background(self) -> None:
        for bg in self.background:
            if bg.proc.poll() is not None:
                raise StreamrecError(f"{bg.name} exited with code {bg.proc.returncode}; see {bg.log_path}")

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_background()
            if check():
                return
            time.sleep(0.5)
        raise StreamrecError(f"timed out after {timeout_s:.0f}s waiting for {what}")

    def stop(self) -> None:
        for bg in reversed(self.background):
            if bg.proc.poll() is None:
                note(f"stopping {bg.name}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(bg.proc.pid, signal.SIGTERM)
        for bg in self.background:
            try:
                bg.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(bg.proc.pid, signal.SIGKILL)
        self.background.clear()
        if self.started_stack:
            note(f"stopping the stack components the demo started: {', '.join(self.started_stack)}")
            self.stack.down()

    # -- steps -----------------------------------------------------------------------------------------
    def start_stack(self) -> None:
        say("1/7 Starting the local stack: Kafka 4 (KRaft), Valkey + RedisBloom, Triton")
        self.started_stack = self.stack.up(note)
        for row in self.stack.status():
            note(f"{row.name:<7} {row.state:<9} {row.health.detail}")

    def prepare_data(self) -> None:
        say(f"2/7 Preparing the {self.options.dataset} dataset (archive layout: Parquet by event date)")
        if (self.dataset_root / "items.parquet").is_file():
            note(f"already prepared at {self.dataset_root}")
            return
        if self.has("data"):
            self.streamrec("data", "prepare", "--dataset", self.options.dataset)

    def current_export(self) -> str | None:
        try:
            version = read_current(self.paths.export_root)
            metadata = load_metadata(version_dir(self.paths.export_root, version))
        except ArtifactError:
            return None
        return version if metadata.dataset == self.options.dataset else None

    def train(self) -> None:
        say("3/7 Training Two-Tower + DLRM, building the FAISS index, exporting")
        version = self.current_export()
        if version and not self.options.retrain:
            note(f"export {version} (trained on {self.options.dataset}) is published; --retrain trains again")
            return
        if self.has("train"):
            self.streamrec("train", "full", "--dataset", self.options.dataset)

    def start_serving(self) -> None:
        say("4/7 Feast feature repository, Triton ensemble, streaming worker, archiver, API and catalog sync")
        if self.has("features"):
            self.streamrec("features", "apply", "--dataset", self.options.dataset, "--materialize")
        if self.has("serve"):
            self.streamrec("serve", "prepare")
        if self.has("worker"):
            self.spawn("worker", "worker")
        if self.has("archive"):
            self.spawn("archiver", "archive")
        if self.has("api"):
            self.spawn("api", "api")
            self.wait_for("the API", lambda: _http_ok(f"http://127.0.0.1:{API_PORT}/healthz"))
            note(f"web page: http://127.0.0.1:{API_PORT}/ui  (API key: {DEMO_API_KEY})")
        if "worker" in self.available:
            self.wait_for("the worker", lambda: _http_ok(f"http://127.0.0.1:{WORKER_WEB_PORT}/metrics"))
        if self.has("catalog-sync"):
            self.spawn("catalog-sync", "catalog-sync", "--export-root", str(self.paths.export_root))

    def replay(self) -> list[str]:
        say(f"5/7 Replaying {self.options.replay_limit:,} {self.options.dataset} events into Kafka")
        self.streamrec(
            "replay",
            "--dataset",
            self.options.dataset,
            "--limit",
            str(self.options.replay_limit),
            "--retime",
            "--new-ids",
        )
        if "worker" in self.available:
            self.wait_for_worker()
        frame = read_interactions(self.dataset_root, columns=["user_id"]).iloc[: self.options.replay_limit]
        return list(frame["user_id"].value_counts().index[:3])

    def wait_for_worker(self, timeout_s: float = 300.0) -> None:
        """The showcase needs the worker caught up: its new events must not queue behind the replay."""
        start = time.monotonic()
        last_shown = 0.0
        while True:
            self.check_background()
            lag = consumer_lag(self.kafka, WORKER_GROUP, self.kafka.interactions_topic)
            elapsed = time.monotonic() - start
            if lag == 0:
                note(f"the worker has processed everything ({elapsed:.0f}s after the replay ended)")
                return
            if elapsed > timeout_s:
                raise StreamrecError(f"the worker is still {lag} events behind after {timeout_s:.0f}s")
            if elapsed - last_shown >= 5:
                note(f"the worker is catching up: {'no commit yet' if lag is None else f'{lag:,} events behind'}")
                last_shown = elapsed
            time.sleep(1)

    def showcase(self, users: list[str]) -> None:
        api = showcase.ApiClient(f"http://127.0.0.1:{API_PORT}", DEMO_API_KEY)
        say("6/7 Showcase")
        if "api" in self.available:
            showcase.wait_for_pipeline(api, users[0], note)
            note("(a) recommendations from the HTTP API:")
            showcase.show_api_recommendations(api, users, note)
        if "worker" in self.available:
            note("(b) an event updates the user's seen-item Bloom filter and Feast online features:")
            self._show_state_update(users[1 % len(users)])
            note("(c) new events -> the worker refreshes recommendations on the 'recommendations' topic:")
            items = self._recommended_items(users[-1], k=2)
            showcase.wait_for_pushed_recommendations(self.kafka, users[-1], items, note)
        if "api" in self.available and "worker" in self.available:
            note("(d) a seen item disappears from the user's results (Bloom filter exclusion):")
            showcase.show_seen_item_disappears(api, users[0], note)
        if "api" in self.available and "catalog-sync" in self.available:
            content = self._item_content()
            note("(e) an item added to the catalog through the API is recommended, without retraining:")
            showcase.show_item_added_live(api, users, content, note)
            note("(f) an item made unavailable disappears from every answer:")
            showcase.show_item_made_unavailable(api, users, content, note)

    def _item_content(self) -> dict[str, dict[str, Any]]:
        """Titles and categories of the dataset's items (what a shop would send for them)."""
        from streamrec.archive import read_items
        from streamrec.catalog.models import MAX_TITLE_CHARS

        frame = read_items(self.dataset_root)
        return {
            str(row.item_id): {"title": str(row.text or row.item_id)[:MAX_TITLE_CHARS] or str(row.item_id),
                               "category": str(row.category or "unknown")[:128]}
            for row in frame[["item_id", "category", "text"]].itertuples(index=False)
        }  # fmt: skip

    def _show_state_update(self, user_id: str) -> None:
        from streamrec.feast_config import open_configured_store

        # The settings the worker writes with (STREAMREC_FEAST_*), so the demo reads the rows it writes.
        feast_store = open_configured_store(FeastSettings.load(), RedisSettings.load().effective_url)
        bloom = showcase.connect_bloom()
        # An item the user has not seen: recommendations exclude seen ones.
        candidates = self._recommended_items(user_id, k=10)
        unseen = [item for item, seen in zip(candidates, bloom.contains(user_id, candidates), strict=True) if not seen]
        showcase.show_event_updates_state(self.kafka, bloom, feast_store, user_id, (unseen or candidates)[0], note)

    def _recommended_items(self, user_id: str, k: int) -> list[str]:
        api = showcase.ApiClient(f"http://127.0.0.1:{API_PORT}", DEMO_API_KEY)
        try:
            return [i["item_id"] for i in api.recommendations(user_id, k=k)["items"]] or ["1"]
        except Exception:
            return ["1"]

    def where_to_look(self) -> None:
        say("7/7 Try it by hand")
        base = f"http://127.0.0.1:{API_PORT}"
        note(f"web page: {base}/ui   (API key: {DEMO_API_KEY})")
        note(f"curl -H 'X-API-Key: {DEMO_API_KEY}' '{base}/v1/recommendations?user_id=1&k=5&timings=true'")
        note("""EVENT='{"event_id": "'$(cat /proc/sys/kernel/random/uuid)'", "user_id": "1", "item_id": "50",'""")
        note("""EVENT+=' "event_type": "click", "timestamp": '$(date +%s000)', "context": {"device": "mobile",'""")
        note("""EVENT+=' "session_id": "s1"}}'""")
        note(f"curl -H 'X-API-Key: {DEMO_API_KEY}' -H 'Content-Type: application/json' -d \"$EVENT\" {base}/v1/events")
        note(".venv/bin/streamrec recs --follow                       # pushed recommendations")
        note(f"curl {base}/docs                                         # OpenAPI")
        note(f"curl http://127.0.0.1:{WORKER_WEB_PORT}/metrics | grep streamrec   # worker metrics")
        note(f".venv/bin/streamrec stack status; logs under {StackSettings.load().run_dir}")

    def run(self) -> int:
        # SIGINT explicitly too: a shell that starts the demo in the background leaves SIGINT ignored.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            self.start_stack()
            self.prepare_data()
            self.train()
            self.start_serving()
            users = self.replay()
            self.showcase(users)
            self.where_to_look()
            if self.options.wait:
                say("Running. Press Ctrl-C to stop.")
                while True:
                    self.check_background()
                    time.sleep(1)
        except KeyboardInterrupt:
            print()
            say("Stopping")
        except StreamrecError as exc:
            print(f"streamrec demo: error: {exc}", file=sys.stderr)
            return exc.exit_code
        finally:
            self.stop()
        return 0

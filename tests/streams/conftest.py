"""Fixtures for the worker tests: run ``streamrec worker`` as a subprocess on unique topics and state."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from streamrec.client.admin import delete_topics, existing_topics
from streamrec.settings import FeastSettings, PathsSettings, RedisSettings
from streams.settings import StreamsSettings
from tests.conftest import StackHandle

REPO = Path(__file__).resolve().parents[2]
N_ITEMS = 60
CATEGORIES = {f"it{n}": f"cat{n % 4}" for n in range(N_ITEMS - 5)}  # the last 5 items are not in the catalog


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_catalog(path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "item_id": list(CATEGORIES),
            "category": list(CATEGORIES.values()),
            "price": [float(n) for n in range(len(CATEGORIES))],
            "text": [f"item {n}" for n in range(len(CATEGORIES))],
            "image_png": [None] * len(CATEGORIES),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


@dataclass
class Worker:
    """One worker deployment (app id, topics, Feast project); ``start`` may be called again after a kill."""

    stack: StackHandle
    env: dict[str, str]
    log_path: Path
    port: int
    topics: dict[str, str]
    streams: StreamsSettings
    feast: FeastSettings
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli.main", "worker", *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.procs[-1]

    def metrics(self, port: int | None = None) -> dict[str, float]:
        raw = urllib.request.urlopen(f"http://127.0.0.1:{port or self.port}/metrics", timeout=2).read().decode()
        out: dict[str, float] = {}
        for line in raw.splitlines():
            if line.startswith("streamrec_worker_"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def metric(self, name: str) -> float:
        return sum(v for k, v in self.metrics().items() if re.fullmatch(rf"{name}(\{{.*\}})?", k))

    def wait_idle(self, partitions: int, timeout_s: float = 90.0, workers: int = 1) -> dict[str, float]:
        """Until every partition of the source and by-item topics has committed up to its end (twice).

        With ``workers`` processes (``--workers``), their metrics are summed: each reports the partitions it owns.
        """
        deadline = time.monotonic() + timeout_s
        settled = 0
        last: dict[str, float] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                last = {}
                for n in range(workers):
                    for key, value in self.metrics(self.port + n).items():
                        last[key] = last.get(key, 0.0) + value
            except OSError:
                time.sleep(0.5)
                continue
            lags = {k: v for k, v in last.items() if k.startswith("streamrec_worker_consumer_lag{")}
            if len(lags) == 2 * partitions and all(v == 0 for v in lags.values()):
                settled += 1
                if settled >= 2:
                    return last
            else:
                settled = 0
            time.sleep(0.5)
        lags = {k: v for k, v in last.items() if "_lag{" in k and v}
        raise AssertionError(f"worker not idle after {timeout_s}s; lags {lags}; log {self.log_path}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(line[:300] for line in text[-lines:])


@pytest.fixture
def worker_factory(
    stack: StackHandle, unique_topics: Callable[..., str], unique_id: str, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """Builds workers on fresh topics; each gets its own app id, Feast project and registry."""
    from streams.feast_store import apply_repo

    made: list[Worker] = []

    def make(partitions: int = 3, extra_env: dict[str, str] | None = None) -> Worker:
        n = len(made)
        topics = {
            "interactions": unique_topics("in", partitions),
            "recommendations": unique_topics("recs", partitions),
            "dlq": unique_topics("dlq", 1),
        }
        app_id = f"test-worker-{unique_id}-{n}"
        archive = tmp_path / f"archive{n}"
        env = {
            **os.environ,
            "STREAMREC_STREAMS_APP_ID": app_id,
            "STREAMREC_STREAMS_INTERACTIONS_TOPIC": topics["interactions"],
            "STREAMREC_STREAMS_RECOMMENDATIONS_TOPIC": topics["recommendations"],
            "STREAMREC_STREAMS_DLQ_TOPIC": topics["dlq"],
            "STREAMREC_STREAMS_WEB_PORT": str(free_port()),
            "STREAMREC_STREAMS_WEB_HOST": "127.0.0.1",
            "STREAMREC_STREAMS_DATA_DIR": str(tmp_path / "faust"),
            "STREAMREC_STREAMS_CATALOG_PATH": str(write_catalog(tmp_path / f"catalog{n}" / "items.parquet")),
            "STREAMREC_FEAST_PROJECT": f"t{unique_id}{n}",
            "STREAMREC_FEAST_REGISTRY": str(tmp_path / f"feast{n}" / "registry.db"),
            "STREAMREC_STREAMS_RECS_SOURCE": "popularity",
            "STREAMREC_STREAMS_COMMIT_INTERVAL_S": "0.5",
            "STREAMREC_STREAMS_LAG_INTERVAL_S": "0.5",
            "STREAMREC_PATHS_ARCHIVE_ROOT": str(archive),
            **(extra_env or {}),
        }
        streams = StreamsSettings(app_id=app_id)
        feast = FeastSettings(project=env["STREAMREC_FEAST_PROJECT"], registry=Path(env["STREAMREC_FEAST_REGISTRY"]))
        # Applied here (not by the worker's first start) so the test's own store sees the same registry.
        apply_repo(feast, RedisSettings.load(), PathsSettings(archive_root=archive))
        # Logs outside tmp_path (which pytest rotates) so a failure can be read afterwards.
        log_path = REPO / ".streamrec" / "test-logs" / f"{app_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        worker = Worker(stack, env, log_path, int(env["STREAMREC_STREAMS_WEB_PORT"]), topics, streams, feast)
        made.append(worker)
        return worker

    yield make
    internal: list[str] = []
    for worker in made:
        worker.stop()
        internal += [t for t in existing_topics(stack.kafka) if t.startswith(worker.streams.app_id + "-")]
    delete_topics(stack.kafka, internal)

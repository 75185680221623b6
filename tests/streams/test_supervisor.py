"""``streamrec worker --workers N`` supervision, with stand-in child processes (no Kafka needed)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from streams.settings import StreamsSettings
from streams.supervisor import Supervisor, child_env

#: A stand-in worker: records its pid and environment, exits 3 at once when told to, else runs until SIGTERM.
CHILD = """
import os, signal, sys, time
out = os.environ["OUT"]
port = os.environ["STREAMREC_STREAMS_WEB_PORT"]
with open(os.path.join(out, f"{port}-{os.getpid()}"), "w") as f:
    f.write(os.environ["STREAMREC_STREAMS_APP_ID"] + " " + os.environ["STREAMREC_STREAMS_DATA_DIR"])
crash = os.path.join(out, f"crash-{port}")
if os.path.exists(crash):
    n = int(open(crash).read())
    if n > 0:
        open(crash, "w").write(str(n - 1))
        sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.05)
"""


def supervisor(tmp_path: Path, workers: int, **kwargs: object) -> Supervisor:
    settings = StreamsSettings(app_id="sup-test", web_port=7100, data_dir=tmp_path / "data")
    env = {**os.environ, "OUT": str(tmp_path)}
    return Supervisor(
        workers,
        settings,
        command=[sys.executable, "-c", CHILD],
        base_env=env,
        ready=lambda index: True,
        restart_delay_s=0.1,
        stop_timeout_s=10,
        **kwargs,  # type: ignore[arg-type]
    )


def started(tmp_path: Path) -> list[tuple[int, int]]:
    """(port, pid) of every child started so far."""
    out = []
    for path in tmp_path.iterdir():
        port, _, pid = path.name.partition("-")
        if port.isdigit():
            out.append((int(port), int(pid)))
    return sorted(out)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: the supervisor reaps its children, so an unreaped one would show here.
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def sigterm_after(condition: object, timeout_s: float = 20.0) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not condition():  # type: ignore[operator]
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_children_share_the_group_and_get_their_own_port_and_data_dir(tmp_path: Path) -> None:
    settings = StreamsSettings(app_id="grp", web_port=7000, data_dir=tmp_path)
    envs = [child_env({"KEEP": "1"}, settings, i) for i in range(3)]
    assert {e["STREAMREC_STREAMS_APP_ID"] for e in envs} == {"grp"}
    assert [e["STREAMREC_STREAMS_WEB_PORT"] for e in envs] == ["7000", "7001", "7002"]
    assert len({e["STREAMREC_STREAMS_DATA_DIR"] for e in envs}) == 3
    assert all(e["KEEP"] == "1" for e in envs)


def test_a_worker_that_exits_is_started_again_and_sigterm_stops_every_worker(tmp_path: Path) -> None:
    (tmp_path / "crash-7101").write_text("2")  # worker 1 exits twice before it stays up
    sup = supervisor(tmp_path, 3)
    sigterm_after(lambda: len(started(tmp_path)) >= 5)
    assert sup.run() == 0
    runs = started(tmp_path)
    ports = [port for port, _ in runs]
    assert ports.count(7100) == 1 and ports.count(7102) == 1 and ports.count(7101) == 3
    assert not any(alive(pid) for _, pid in runs), "every worker is stopped"
    first = next(path for path in tmp_path.iterdir() if path.name.startswith("7100-"))
    assert first.read_text() == f"sup-test {tmp_path / 'data' / 'worker-0'}"


def test_a_crash_loop_stops_all_workers_with_exit_code_1(tmp_path: Path) -> None:
    (tmp_path / "crash-7101").write_text("100")
    sup = supervisor(tmp_path, 2, max_restarts=3, restart_window_s=60)
    assert sup.run() == 1
    runs = started(tmp_path)
    assert [port for port, _ in runs].count(7101) == 4  # the first start and three restarts
    assert not any(alive(pid) for _, pid in runs)


def test_fewer_than_one_worker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        supervisor(tmp_path, 0)

"""``streamrec api`` start-up guards: one line and exit code 2 before anything binds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("variable", "value"),
    [("STREAMREC_API_API_KEYS", '["changeit"]'), ("REDIS_URL", "redis://:changeit@127.0.0.1:1/0")],
)
def test_api_refuses_to_start_with_a_placeholder_secret(variable: str, value: str) -> None:
    env = {**os.environ, "STREAMREC_API_API_KEYS": '["a-real-key-of-enough-length-1234"]', variable: value}
    result = subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", "api", "--port", "1"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and "placeholder" in lines[0], result.stderr
    assert "changeit" not in result.stderr  # the secret itself is never printed

"""The worker and the archiver refuse placeholder secrets before any connection: one line, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", ["worker", "archive"])
def test_component_refuses_a_placeholder_kafka_password(command: str) -> None:
    env = {
        **os.environ,
        "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAMREC_KAFKA_SASL_USERNAME": "svc",
        "STREAMREC_KAFKA_SASL_PASSWORD": "changeit",
    }
    result = subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", command],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamrec: error: STREAMREC_KAFKA_SASL_PASSWORD: placeholder")

"""The CLI: one line and exit code 2 for anything the user can fix."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from streamrec.errors import StackError
from streamrec.stack.base import Component, Health


def run_cli(*args: str, stdin: str | None = None, env: Mapping[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_unknown_command_exits_2_with_one_line() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid choice" in result.stderr


def test_missing_input_file_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("produce", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"streamrec: error: produce FILE: no such file: {tmp_path}/nope.jsonl"
    ]


def test_invalid_event_line_names_line_field_and_reason() -> None:
    result = run_cli("produce", "-", stdin='{"event_id": "6f1c2f1e-8d2a-4a4e-9a51-0f5d3c7b9e10"}\n')
    assert result.returncode == 2
    assert result.stderr.strip() == "streamrec: error: line 1: user_id: field required (0 sent before it)"


def test_config_prints_every_section_with_secrets_masked() -> None:
    import os

    env = {**os.environ, "REDIS_URL": "redis://:topsecret@h:1/0", "STREAMREC_KAFKA_SASL_PASSWORD": "pw"}
    result = run_cli("config", env=env)
    assert result.returncode == 0, result.stderr
    for section in ("[kafka]", "[redis]", "[bloom]", "[triton]", "[stack]", "[paths]"):
        assert section in result.stdout
    assert "topsecret" not in result.stdout and "redis://:***@h:1/0" in result.stdout
    assert "STREAMREC_KAFKA_SASL_PASSWORD = ***" in result.stdout


def test_bad_setting_exits_2_naming_the_variable() -> None:
    import os

    result = run_cli("config", env={**os.environ, "STREAMREC_BLOOM_CAPACITY": "lots"})
    assert result.returncode == 2
    assert "STREAMREC_BLOOM_CAPACITY" in result.stderr and len(result.stderr.strip().splitlines()) == 1


class _Crashing(Component):
    name = "crasher"

    @property
    def external(self) -> bool:
        return False

    def health(self) -> Health:
        return Health(False, "never healthy")

    def command(self) -> tuple[Sequence[str], Mapping[str, str]]:
        return ["sh", "-c", "echo 'bind: address already in use'; exit 3"], {}


def test_component_that_fails_to_start_is_named_with_reason_and_log(tmp_path: Path) -> None:
    comp = _Crashing(tmp_path)
    with pytest.raises(StackError) as info:
        comp.start(10, lambda _: None)
    message = str(info.value)
    assert message.startswith("crasher: exited with code 3: bind: address already in use")
    assert str(comp.log_path) in message
    assert comp.pid() is None


def test_component_refuses_to_start_on_a_port_another_process_holds(tmp_path: Path) -> None:
    import socket

    from streamrec.settings import RedisSettings
    from streamrec.stack.valkey import ValkeyComponent

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        comp = ValkeyComponent(tmp_path, RedisSettings(local_port=port))
        with pytest.raises(StackError, match=f"port {port} on 127.0.0.1 is already in use"):
            comp.start(10, lambda _: None)
        assert comp.pid() is None


def test_json_log_lines_carry_component_trace_and_extra_fields() -> None:
    import io
    import json
    import logging

    from streamrec import logging as streamrec_logging

    out = io.StringIO()
    handler = streamrec_logging.configure("archive", level="info", fmt="json", stream=out)
    try:
        log = logging.getLogger("consumers.archiver")
        log.debug("not shown at info")
        with streamrec_logging.bind_trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"):
            log.info("archived %d events", 3, extra={"files": 2})
        log.warning("outside the trace")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["archived 3 events", "outside the trace"]
    first, second = lines
    assert first["level"] == "info" and first["component"] == "archive" and first["logger"] == "consumers.archiver"
    assert (first["trace_id"], first["span_id"], first["files"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        2,
    )
    assert "trace_id" not in second and second["level"] == "warning"


def test_traceparent_header_parses_only_when_well_formed() -> None:
    from streamrec.logging import parse_traceparent

    assert parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    for bad in (None, "", "00-xyz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "00-abc-def-01"):
        assert parse_traceparent(bad) is None


def test_text_log_keeps_info_lines_and_a_second_configure_replaces_the_handler() -> None:
    import io
    import logging

    from streamrec import logging as streamrec_logging

    first, second = io.StringIO(), io.StringIO()
    streamrec_logging.configure("worker", fmt="text", stream=first)
    handler = streamrec_logging.configure("worker", level="info", fmt="text", stream=second)
    try:
        logging.getLogger("streams.worker").info("worker %s started", "w1")
    finally:
        logging.getLogger().removeHandler(handler)
    assert first.getvalue() == ""
    assert second.getvalue().rstrip().endswith("INFO worker streams.worker: worker w1 started")


def test_log_level_is_accepted_before_and_after_the_command() -> None:
    assert run_cli("--log-level", "debug", "config").returncode == 0
    assert run_cli("config", "--log-level", "warning").returncode == 0
    result = run_cli("config", "--log-level", "loud")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_bad_log_format_exits_2_with_one_line() -> None:
    import os

    result = run_cli("config", env={**os.environ, "STREAMREC_LOG_FORMAT": "xml"})
    assert result.returncode == 2
    assert result.stderr.strip() == "streamrec: error: STREAMREC_LOG_FORMAT: must be one of text, json, got 'xml'"

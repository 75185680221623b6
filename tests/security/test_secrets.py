"""Secrets at rest: API keys stored as hashes, and the start-up guard against placeholder secrets."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from pydantic import SecretStr

from serving.settings import ApiSettings
from streamrec.errors import ConfigError
from streamrec.security import (
    ApiKeyVerifier,
    generate_api_key,
    hash_api_key,
    placeholder_secret_fields,
    refuse_placeholder_secrets,
    verify_api_key,
)
from streamrec.settings import KafkaSettings, RedisSettings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("STREAMREC_") or var in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "TRITON_URL"):
            monkeypatch.delenv(var)


# -- hashed API keys ----------------------------------------------------------------------------------------


def test_a_sha256_stored_key_verifies_only_its_own_key() -> None:
    key = generate_api_key()
    stored = hash_api_key(key)
    assert stored == "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    assert key not in stored
    assert verify_api_key(key, stored)
    assert not verify_api_key(key + "x", stored)
    assert not verify_api_key(key[:-1], stored)
    assert not verify_api_key("", stored)


def test_a_pbkdf2_stored_key_is_salted_and_verifies_only_its_own_key() -> None:
    key = "a person chose this key"
    first, second = hash_api_key(key, "pbkdf2_sha256", iterations=1000), hash_api_key(key, "pbkdf2_sha256", 1000)
    assert first != second, "a fresh salt each time"
    assert first.startswith("pbkdf2_sha256:1000:")
    assert verify_api_key(key, first) and verify_api_key(key, second)
    assert not verify_api_key("a person chose this kez", first)
    assert not verify_api_key(key, "pbkdf2_sha256:1000:not-base64")


def test_short_placeholder_and_padded_keys_are_not_hashed() -> None:
    with pytest.raises(ConfigError, match="at least 24 random characters"):
        hash_api_key("short-key")
    with pytest.raises(ConfigError, match="placeholder"):
        hash_api_key("change-me", "pbkdf2_sha256")
    with pytest.raises(ConfigError, match="surrounding spaces"):
        hash_api_key(" " + generate_api_key())


def test_the_verifier_accepts_any_stored_key_and_refuses_plaintext_entries() -> None:
    keys = [generate_api_key() for _ in range(3)]
    verifier = ApiKeyVerifier(
        [SecretStr(hash_api_key(k)) for k in keys[:2]] + [hash_api_key(keys[2], "pbkdf2_sha256", 1000)]
    )
    assert len(verifier) == 3
    assert all(verifier.verify(k) for k in keys)
    assert not verifier.verify(generate_api_key())
    assert not verifier.verify(None) and not verifier.verify("")
    with pytest.raises(ConfigError, match=r"^STREAMREC_API_API_KEYS: entry 1 is not a stored hash .*hash-api-key"):
        ApiKeyVerifier([hash_api_key(keys[0]), keys[1]])


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamrec.security", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_the_cli_hashes_a_key_read_from_stdin() -> None:
    key = generate_api_key()
    result = _cli("hash-api-key", stdin=key + "\n")
    assert result.returncode == 0, result.stderr
    stored = result.stdout.strip()
    assert verify_api_key(key, stored) and key not in result.stdout


def test_the_cli_generates_a_key_with_its_hash() -> None:
    result = _cli("hash-api-key", "--generate")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.strip().splitlines())
    assert verify_api_key(lines["key"].strip(), lines["hash"].strip())


def test_the_cli_exits_2_with_one_line_for_a_bad_key() -> None:
    result = _cli("hash-api-key", stdin="short\n")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "at least 24" in result.stderr


# -- placeholder secrets refused at start-up ------------------------------------------------------------------


def test_the_base_secrets_placeholders_are_refused_naming_each_variable() -> None:
    api = ApiSettings(api_keys=[SecretStr("change-me")])
    redis = RedisSettings.load(url="redis://:change-me@redis:6379/0")
    kafka = KafkaSettings.load(
        bootstrap_servers="kafka:9093", security_protocol="SASL_SSL", sasl_username="w", sasl_password="CHANGE-ME"
    )
    with pytest.raises(ConfigError) as info:
        refuse_placeholder_secrets(kafka, redis, api)
    message = str(info.value)
    assert message.startswith("STREAMREC_KAFKA_SASL_PASSWORD, STREAMREC_REDIS_URL, STREAMREC_API_API_KEYS: ")
    assert "\n" not in message


def test_empty_passwords_and_hashed_placeholders_are_refused() -> None:
    assert placeholder_secret_fields(RedisSettings.load(url="redis://user:@redis:6379/0")) == ["STREAMREC_REDIS_URL"]
    hashed_placeholder = "sha256:" + hashlib.sha256(b"change-me").hexdigest()
    api = ApiSettings(api_keys=[SecretStr(hash_api_key(generate_api_key())), SecretStr(hashed_placeholder)])
    assert placeholder_secret_fields(api) == ["STREAMREC_API_API_KEYS"]
    assert placeholder_secret_fields(ApiSettings(api_keys=[SecretStr("")])) == ["STREAMREC_API_API_KEYS"]


def test_real_secrets_and_no_secrets_pass_the_start_up_guard() -> None:
    refuse_placeholder_secrets(
        KafkaSettings.load(),
        RedisSettings.load(),
        RedisSettings.load(url="rediss://:Xb7-q2Lw9@redis:6380/0"),
        ApiSettings(api_keys=[SecretStr(hash_api_key(generate_api_key()))]),
        KafkaSettings.load(security_protocol="SASL_SSL", sasl_username="w", sasl_password="Xb7-q2Lw9-long"),
    )


def test_the_deployment_base_secret_placeholders_stop_the_components_that_read_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The manifests' example Secret, put into the environment the way the Deployments do, is refused."""
    from pathlib import Path

    import yaml

    secret = yaml.safe_load((Path(__file__).resolve().parents[2] / "k8s/base/config/secret.yaml").read_text())
    data = secret["stringData"]
    monkeypatch.setenv("REDIS_URL", f"redis://:{data['redis-password']}@redis:6379/0")
    monkeypatch.setenv("STREAMREC_API_API_KEYS", data["api-keys"])
    with pytest.raises(ConfigError, match="^REDIS_URL, STREAMREC_API_API_KEYS: placeholder or empty secret"):
        refuse_placeholder_secrets(RedisSettings.load(), ApiSettings.load())

"""Transport security and secrets, built in one place from the settings.

* Kafka: :func:`librdkafka_security_config` (confluent-kafka clients: producer SDK, admin, archiver, API),
  :func:`kafka_ssl_context` and :func:`aiokafka_security_kwargs` (aiokafka), :func:`faust_broker_credentials`
  (the worker's ``faust.App(broker_credentials=...)``). :func:`check_kafka_security` refuses insecure or
  incomplete combinations when :class:`~streamrec.settings.KafkaSettings` is built.
* Redis: :func:`check_redis_security` (TLS options only with ``rediss://``); the client options themselves are
  :meth:`~streamrec.settings.RedisSettings.client_kwargs`.
* Secrets: :func:`refuse_placeholder_secrets` (start-up guard), API keys stored hashed
  (:func:`hash_api_key`, :class:`ApiKeyVerifier`), ``python -m streamrec.security hash-api-key``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import ssl
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, SecretStr

from streamrec.errors import ConfigError

if TYPE_CHECKING:
    from streamrec.settings import ComponentSettings, KafkaSettings, RedisSettings

KAFKA_PREFIX = "STREAMREC_KAFKA_"
REDIS_PREFIX = "STREAMREC_REDIS_"

# -- Kafka ------------------------------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hosts(bootstrap: str) -> list[str]:
    hosts = []
    for server in bootstrap.split(","):
        server = server.strip()
        if server:
            # host:port, [v6]:port, or a bare host
            host = server.rsplit(":", 1)[0] if server.count(":") == 1 or server.startswith("[") else server
            hosts.append(host)
    return hosts


def _only_loopback(kafka: KafkaSettings) -> bool:
    return all(is_loopback_host(h) for h in _hosts(kafka.bootstrap))


def check_kafka_security(kafka: KafkaSettings) -> None:
    """Raise a one-line :class:`ConfigError` for a combination that is incomplete, ignored or insecure."""
    protocol = kafka.security_protocol
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    if kafka.uses_sasl:
        if not kafka.sasl_username or not password:
            raise ConfigError(
                f"{protocol} needs {KAFKA_PREFIX}SASL_USERNAME and {KAFKA_PREFIX}SASL_PASSWORD",
                source=f"{KAFKA_PREFIX}SECURITY_PROTOCOL",
            )
    elif kafka.sasl_username:
        raise ConfigError(
            f"SASL credentials are set but security protocol {protocol} would not send them; "
            f"set {KAFKA_PREFIX}SECURITY_PROTOCOL=SASL_SSL",
            source=f"{KAFKA_PREFIX}SASL_USERNAME",
        )
    tls_files = {
        "SSL_CA_LOCATION": kafka.ssl_ca_location,
        "SSL_CERTIFICATE_LOCATION": kafka.ssl_certificate_location,
        "SSL_KEY_LOCATION": kafka.ssl_key_location,
    }
    if not kafka.uses_tls:
        for name, value in tls_files.items():
            if value is not None:
                raise ConfigError(
                    f"TLS file set but security protocol {protocol} does not use TLS; use SSL or SASL_SSL",
                    source=f"{KAFKA_PREFIX}{name}",
                )
    if (kafka.ssl_certificate_location is None) != (kafka.ssl_key_location is None):
        raise ConfigError(
            "a client certificate needs both SSL_CERTIFICATE_LOCATION and SSL_KEY_LOCATION",
            source=f"{KAFKA_PREFIX}SSL_CERTIFICATE_LOCATION",
        )
    if kafka.allow_insecure or _only_loopback(kafka):
        return
    if protocol == "SASL_PLAINTEXT" and kafka.sasl_mechanism == "PLAIN":
        raise ConfigError(
            "SASL PLAIN over an unencrypted connection sends the password in clear to "
            f"{kafka.bootstrap}; use SASL_SSL (or set {KAFKA_PREFIX}ALLOW_INSECURE=true for a test cluster)",
            source=f"{KAFKA_PREFIX}SECURITY_PROTOCOL",
        )
    if kafka.uses_tls and not kafka.ssl_check_hostname:
        raise ConfigError(
            f"certificate host names must be checked for {kafka.bootstrap} "
            f"(or set {KAFKA_PREFIX}ALLOW_INSECURE=true for a test cluster)",
            source=f"{KAFKA_PREFIX}SSL_CHECK_HOSTNAME",
        )


def _readable(path: Path, variable: str) -> str:
    if not path.is_file():
        raise ConfigError(f"file {path} does not exist", source=variable)
    return str(path)


def librdkafka_security_config(kafka: KafkaSettings) -> dict[str, Any]:
    """``security.protocol``, ``sasl.*`` and ``ssl.*`` properties for confluent-kafka clients."""
    conf: dict[str, Any] = {"security.protocol": kafka.security_protocol}
    if kafka.uses_sasl:
        conf["sasl.mechanisms"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username
        conf["sasl.password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    if kafka.uses_tls:
        # "probe": the system CA bundle, wherever this OpenSSL build expects it.
        conf["ssl.ca.location"] = (
            _readable(kafka.ssl_ca_location, f"{KAFKA_PREFIX}SSL_CA_LOCATION") if kafka.ssl_ca_location else "probe"
        )
        conf["ssl.endpoint.identification.algorithm"] = "https" if kafka.ssl_check_hostname else "none"
        if kafka.ssl_certificate_location and kafka.ssl_key_location:
            conf["ssl.certificate.location"] = _readable(
                kafka.ssl_certificate_location, f"{KAFKA_PREFIX}SSL_CERTIFICATE_LOCATION"
            )
            conf["ssl.key.location"] = _readable(kafka.ssl_key_location, f"{KAFKA_PREFIX}SSL_KEY_LOCATION")
            if kafka.ssl_key_password:
                conf["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    return conf


def kafka_ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """A verifying client :class:`ssl.SSLContext` for aiokafka/Faust; None when the protocol has no TLS."""
    if not kafka.uses_tls:
        return None
    cafile = _readable(kafka.ssl_ca_location, f"{KAFKA_PREFIX}SSL_CA_LOCATION") if kafka.ssl_ca_location else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certificate_location and kafka.ssl_key_location:
        context.load_cert_chain(
            _readable(kafka.ssl_certificate_location, f"{KAFKA_PREFIX}SSL_CERTIFICATE_LOCATION"),
            _readable(kafka.ssl_key_location, f"{KAFKA_PREFIX}SSL_KEY_LOCATION"),
            kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None,
        )
    return context


def aiokafka_security_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``/``AIOKafkaAdminClient``."""
    kwargs: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    context = kafka_ssl_context(kafka)
    if context is not None:
        kwargs["ssl_context"] = context
    if kafka.uses_sasl:
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return kwargs


def faust_broker_credentials(kafka: KafkaSettings) -> Any:
    """``broker_credentials`` for ``faust.App``: SASL (with TLS for SASL_SSL), TLS only, or None (PLAINTEXT).

    Faust derives the security protocol from the credentials' type and whether they carry an SSL context,
    so these credentials are what makes the worker honour ``security_protocol``."""
    from faust.auth import SASLCredentials, SSLCredentials

    context = kafka_ssl_context(kafka)
    if kafka.uses_sasl:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return SASLCredentials(
            username=kafka.sasl_username, password=password, ssl_context=context, mechanism=kafka.sasl_mechanism
        )
    if context is not None:
        return SSLCredentials(context)
    return None


# -- Redis ------------------------------------------------------------------------------------------------


def check_redis_security(redis: RedisSettings) -> None:
    scheme = urlsplit(redis.effective_url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"expected a redis:// or rediss:// URL, got {scheme}://", source="REDIS_URL")
    if scheme == "rediss":
        if (redis.ssl_certfile is None) != (redis.ssl_keyfile is None):
            raise ConfigError(
                "a client certificate needs both SSL_CERTFILE and SSL_KEYFILE", source=f"{REDIS_PREFIX}SSL_CERTFILE"
            )
        return
    for name in ("ssl_ca_file", "ssl_certfile", "ssl_keyfile"):
        if getattr(redis, name) is not None:
            raise ConfigError(
                f"TLS file set but the URL {redis.masked_url} is not rediss://", source=f"{REDIS_PREFIX}{name.upper()}"
            )


# -- placeholder secrets --------------------------------------------------------------------------------

#: Values that are never a real secret (compared case-insensitively, ignoring surrounding <>, quotes, spaces).
PLACEHOLDER_SECRETS = frozenset(
    {"change-me", "changeme", "change_me", "changeit", "password", "secret", "placeholder", "todo", "xxx"}
)


def is_placeholder_secret(value: str) -> bool:
    normal = value.strip().strip("<>\"'").strip().lower()
    return not normal or normal in PLACEHOLDER_SECRETS


def _secret_values(value: Any) -> Iterable[str]:
    """Each secret in a settings value: a SecretStr, a URL's password, or those inside a list."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str) and "://" in value:
        password = urlsplit(value).password
        if password is not None:
            yield password
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secret_values(item)


def placeholder_secret_fields(settings: ComponentSettings) -> list[str]:
    """Environment variables of ``settings`` holding a placeholder or empty secret (a URL's password,
    a SecretStr, a list of them, or an API key hash of a placeholder)."""
    prefix = type(settings).model_config.get("env_prefix", "")
    found = []
    for name, field in type(settings).model_fields.items():
        for text in _secret_values(getattr(settings, name)):
            if is_placeholder_secret(text) or (
                is_api_key_hash(text) and any(verify_api_key(p, text) for p in PLACEHOLDER_SECRETS)
            ):
                found.append(_variable_name(prefix, name, field.validation_alias))
                break
    return found


def _variable_name(prefix: str, name: str, alias: Any) -> str:
    """The environment variable that set a field: the alias present in the environment (``REDIS_URL``), else
    the prefixed name."""
    if isinstance(alias, AliasChoices):
        for choice in alias.choices:
            if isinstance(choice, str) and choice in os.environ:
                return choice
    return f"{prefix}{name.upper()}"


def refuse_placeholder_secrets(*settings: ComponentSettings) -> None:
    """Start-up guard: raise one :class:`ConfigError` line naming every variable with a placeholder secret."""
    bad = [field for s in settings for field in placeholder_secret_fields(s)]
    if bad:
        raise ConfigError(
            "placeholder or empty secret (e.g. 'change-me'); set a real one before starting", source=", ".join(bad)
        )


# -- API keys stored hashed -------------------------------------------------------------------------------

SHA256_PREFIX = "sha256:"
PBKDF2_PREFIX = "pbkdf2_sha256:"
PBKDF2_ITERATIONS = 200_000
#: Keys shorter than this are refused by :func:`hash_api_key` for the fast sha256 scheme.
MIN_SHA256_KEY_CHARS = 24


def generate_api_key() -> str:
    """A new random API key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_api_key(key: str, scheme: str = "sha256", iterations: int = PBKDF2_ITERATIONS) -> str:
    """The stored form of ``key``: ``sha256:<hex>`` for random keys (cheap to check on every request), or
    ``pbkdf2_sha256:<iterations>:<salt>:<hash>`` (base64) for keys a person chose."""
    if not key or key != key.strip():
        raise ConfigError("an API key must be non-empty without surrounding spaces", source="api key")
    if is_placeholder_secret(key):
        raise ConfigError("refusing to hash a placeholder API key", source="api key")
    if scheme == "sha256":
        if len(key) < MIN_SHA256_KEY_CHARS:
            raise ConfigError(
                f"a sha256-hashed key needs at least {MIN_SHA256_KEY_CHARS} random characters "
                "(generate one, or use --scheme pbkdf2_sha256)",
                source="api key",
            )
        return SHA256_PREFIX + hashlib.sha256(key.encode()).hexdigest()
    if scheme == "pbkdf2_sha256":
        salt = secrets.token_bytes(16)
        digest = hashlib.pbkdf2_hmac("sha256", key.encode(), salt, iterations)
        b64 = base64.urlsafe_b64encode
        return f"{PBKDF2_PREFIX}{iterations}:{b64(salt).decode()}:{b64(digest).decode()}"
    raise ConfigError(f"unknown hash scheme {scheme!r} (sha256 or pbkdf2_sha256)", source="--scheme")


def is_api_key_hash(value: str) -> bool:
    return value.startswith((SHA256_PREFIX, PBKDF2_PREFIX))


def verify_api_key(candidate: str, stored: str) -> bool:
    """Whether ``candidate`` is the key ``stored`` (a hash from :func:`hash_api_key`); constant-time compare."""
    if stored.startswith(SHA256_PREFIX):
        digest = hashlib.sha256(candidate.encode()).hexdigest()
        return hmac.compare_digest(digest, stored[len(SHA256_PREFIX) :])
    if stored.startswith(PBKDF2_PREFIX):
        try:
            iterations_text, salt_text, digest_text = stored[len(PBKDF2_PREFIX) :].split(":")
            salt, expected = base64.urlsafe_b64decode(salt_text), base64.urlsafe_b64decode(digest_text)
            iterations = int(iterations_text)
        except ValueError:
            return False
        derived = hashlib.pbkdf2_hmac("sha256", candidate.encode(), salt, iterations)
        return hmac.compare_digest(derived, expected)
    return False


class ApiKeyVerifier:
    """Checks a presented key against the stored hashes; plaintext stored keys are refused at start-up.

    Every stored hash is compared (no early exit), so the time taken does not tell which entry matched."""

    def __init__(self, stored: Sequence[str | SecretStr], source: str = "STREAMREC_API_API_KEYS") -> None:
        hashes = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in stored]
        for index, value in enumerate(hashes):
            if not is_api_key_hash(value):
                raise ConfigError(
                    f"entry {index} is not a stored hash (sha256:... or pbkdf2_sha256:...); "
                    "hash it with: python -m streamrec.security hash-api-key",
                    source=source,
                )
        self._hashes = tuple(hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def verify(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        matched = False
        for stored in self._hashes:
            matched |= verify_api_key(candidate, stored)
        return matched


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamrec.security hash-api-key [--generate] [--scheme ...]``: the key is read from stdin
    (never from the command line, which other users and shell history can see); prints the stored form."""
    parser = argparse.ArgumentParser(prog="python -m streamrec.security")
    commands = parser.add_subparsers(dest="command", required=True)
    hash_cmd = commands.add_parser("hash-api-key", help="print the stored hash of an API key read from stdin")
    hash_cmd.add_argument("--generate", action="store_true", help="generate a new key; print key and hash")
    hash_cmd.add_argument("--scheme", default="sha256", choices=["sha256", "pbkdf2_sha256"])
    args = parser.parse_args(argv)
    try:
        if args.generate:
            key = generate_api_key()
            print(f"key:  {key}")
            print(f"hash: {hash_api_key(key, args.scheme)}")
            return 0
        key = sys.stdin.readline().rstrip("\r\n")
        print(hash_api_key(key, args.scheme))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

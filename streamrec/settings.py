"""Settings, one class per component, read from the environment (prefix ``STREAMREC_<COMPONENT>_``).

Three well-known variables select external services and switch the local stack off for them:
``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and ``TRITON_URL``.

App folders declare their own settings classes the same way (subclassing :class:`ComponentSettings`)
and register them with the CLI plugin registry so that ``streamrec config`` shows them too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamrec.errors import ConfigError
from streamrec.features import FEAST_USER_RECENT_ITEMS_FIELD, FEAST_USER_STREAM_VIEW

#: The repository's Feast feature repository (an editable install runs from the checkout).
DEFAULT_FEATURE_REPO = Path(__file__).resolve().parent.parent / "feature_repo"

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "streamrec"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class ComponentSettings(BaseSettings):
    """Base of every component's settings: env-driven, unknown keys rejected."""

    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    #: Section name shown by ``streamrec config``.
    section: ClassVar[str] = "component"

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Build from the environment, turning validation errors into a one-line :class:`ConfigError`."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "<settings>"
            prefix = cls.model_config.get("env_prefix", "")
            raise ConfigError(f"{first['msg']}", source=f"{prefix}{loc.upper()}") from None


def _env_alias(prefix: str, name: str, *extra: str) -> AliasChoices:
    return AliasChoices(f"{prefix}{name.upper()}", *extra, name)


class KafkaSettings(ComponentSettings):
    """Kafka cluster and topic layout."""

    section: ClassVar[str] = "kafka"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_KAFKA_")

    bootstrap_servers: str | None = Field(
        None,
        validation_alias=_env_alias("STREAMREC_KAFKA_", "bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
        description="External cluster (host:port,...). Unset: the local stack's broker is used and started.",
    )
    local_port: int = Field(19092, ge=1, le=65535, description="Client port of the local KRaft broker.")
    local_controller_port: int = Field(19093, ge=1, le=65535, description="Controller port of the local broker.")
    interactions_topic: str = Field("interactions", min_length=1, description="Topic of interaction events.")
    interactions_partitions: int = Field(6, ge=1, description="Partitions of the interactions topic.")
    recommendations_topic: str = Field("recommendations", min_length=1, description="Topic of pushed recs.")
    recommendations_partitions: int = Field(6, ge=1, description="Partitions of the recommendations topic.")
    dlq_topic: str = Field("interactions.dlq", min_length=1, description="Dead-letter topic for rejects.")
    dlq_partitions: int = Field(1, ge=1, description="Partitions of the dead-letter topic.")
    replication_factor: int = Field(1, ge=1, description="Replication factor for created topics.")
    client_id: str = Field("streamrec", description="client.id sent to the brokers.")
    linger_ms: int = Field(5, ge=0, description="Producer linger: how long to wait to fill a batch.")
    batch_bytes: int = Field(1_000_000, ge=1024, description="Producer batch.size in bytes.")
    compression: Literal["none", "lz4", "zstd", "snappy", "gzip"] = Field(
        "lz4", description="Producer compression codec."
    )
    delivery_timeout_ms: int = Field(30_000, ge=1000, description="Give up delivering a message after this.")
    max_event_bytes: int = Field(16_384, ge=256, description="Larger interaction payloads are rejected.")
    max_future_skew_s: float = Field(
        300.0,
        ge=0,
        description="Interaction events stamped more than this ahead of the reader's clock (a consumer: the broker's"
        " append time) are rejected, by the API with a 422 and by the worker and the archiver to the DLQ.",
    )
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (TLS + SASL), for every client."
    )
    sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="SASL mechanism with a SASL_* protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    sasl_username: str | None = Field(None, description="SASL username (needs a SASL_* security protocol).")
    sasl_password: SecretStr | None = Field(None, description="SASL password (masked in output).")
    ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA(s) that signed the brokers' certificates; unset: the system CAs."
    )
    ssl_certificate_location: Path | None = Field(
        None, description="PEM client certificate for mutual TLS (with ssl_key_location)."
    )
    ssl_key_location: Path | None = Field(None, description="PEM private key of the client certificate.")
    ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted client key (masked).")
    ssl_check_hostname: bool = Field(
        True, description="Check that the broker's certificate names the host connected to (off needs allow_insecure)."
    )
    allow_insecure: bool = Field(
        False,
        description="Accept PLAIN passwords over unencrypted connections and unchecked certificate host names "
        "to non-loopback brokers (for test clusters only).",
    )

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_insecure_combinations(self) -> Self:
        from streamrec.security import check_kafka_security

        check_kafka_security(self)
        return self

    @property
    def external(self) -> bool:
        return self.bootstrap_servers is not None

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"127.0.0.1:{self.local_port}"

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def client_config(self) -> dict[str, Any]:
        """Connection properties shared by every librdkafka client (TLS and SASL included)."""
        from streamrec.security import librdkafka_security_config

        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            **librdkafka_security_config(self),
        }


class RedisSettings(ComponentSettings):
    """Redis-compatible server holding Bloom filters and the Feast online store."""

    section: ClassVar[str] = "redis"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_REDIS_")

    url: str | None = Field(
        None,
        validation_alias=_env_alias("STREAMREC_REDIS_", "url", "REDIS_URL"),
        description="External server (redis://[:password@]host:port/db). Unset: the local Valkey is used.",
    )
    local_port: int = Field(16379, ge=1, le=65535, description="Port of the local Valkey server.")
    socket_timeout_s: float = Field(2.0, gt=0, description="Socket timeout for Redis commands.")
    ssl_ca_file: Path | None = Field(
        None, description="PEM CA file that signed the server's certificate (rediss:// URLs); unset: the system CAs."
    )
    ssl_certfile: Path | None = Field(None, description="PEM client certificate for mutual TLS (rediss:// URLs).")
    ssl_keyfile: Path | None = Field(None, description="PEM private key of the client certificate.")
    ssl_check_hostname: bool = Field(True, description="Check that the server's certificate names the host.")

    @model_validator(mode="after")
    def _tls_options_need_rediss(self) -> Self:
        from streamrec.security import check_redis_security

        check_redis_security(self)
        return self

    @property
    def external(self) -> bool:
        return self.url is not None

    @property
    def effective_url(self) -> str:
        return self.url or f"redis://127.0.0.1:{self.local_port}/0"

    @property
    def masked_url(self) -> str:
        """The effective URL with its password hidden: the only form for messages and logs."""
        return mask_url(self.effective_url)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.effective_url).scheme == "rediss"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(effective_url, **kwargs)`` (sync and asyncio):
        timeouts, and the TLS options of a ``rediss://`` URL (the password comes from the URL)."""
        kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
        }
        if self.uses_tls:
            kwargs.update(
                ssl_cert_reqs="required",
                ssl_check_hostname=self.ssl_check_hostname,
                ssl_ca_certs=str(self.ssl_ca_file) if self.ssl_ca_file else None,
                ssl_certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                ssl_keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        return kwargs


class BloomSettings(ComponentSettings):
    """Per-user seen-item Bloom filters."""

    section: ClassVar[str] = "bloom"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_BLOOM_")

    capacity: int = Field(1000, ge=10, description="Items per user filter before it scales (BF.RESERVE).")
    error_rate: float = Field(0.01, gt=0, lt=0.5, description="Target false-positive rate.")
    ttl_seconds: int = Field(7 * 24 * 3600, ge=60, description="Filter TTL, refreshed on every write.")
    key_prefix: str = Field("bf:seen:", description="Key prefix; the user id follows inside a {hash tag}.")
    backend: Literal["auto", "redisbloom", "bitmap"] = Field(
        "auto", description="auto probes MODULE LIST for 'bf'; bitmap is the Lua fallback."
    )


class TritonSettings(ComponentSettings):
    """Triton inference server and the model repository it serves."""

    section: ClassVar[str] = "triton"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_TRITON_")

    url: str | None = Field(
        None,
        validation_alias=_env_alias("STREAMREC_TRITON_", "url", "TRITON_URL"),
        description="External server's HTTP endpoint (http://host:port). Unset: the local Triton is used.",
    )
    grpc_url: str | None = Field(None, description="External gRPC endpoint host:port (default: host of url:8001).")
    http_port: int = Field(18000, ge=1, le=65535, description="Local Triton HTTP port.")
    grpc_port: int = Field(18001, ge=1, le=65535, description="Local Triton gRPC port.")
    metrics_port: int = Field(18002, ge=1, le=65535, description="Local Triton metrics port.")
    model_repository: Path = Field(
        Path(".streamrec/model_repository"), description="Model repository directory the local Triton serves."
    )
    ensemble_model: str = Field("recommend", description="Name of the ensemble model clients call.")
    request_timeout_s: float = Field(1.0, gt=0, description="Client timeout per inference request.")

    @property
    def external(self) -> bool:
        return self.url is not None

    @property
    def http_url(self) -> str:
        return (self.url or f"http://127.0.0.1:{self.http_port}").rstrip("/")

    @property
    def effective_grpc_url(self) -> str:
        if self.grpc_url:
            return self.grpc_url
        if self.url:
            host = urlsplit(self.url).hostname or "127.0.0.1"
            return f"{host}:8001"
        return f"127.0.0.1:{self.grpc_port}"


class FeastSettings(ComponentSettings):
    """The Feast feature repository every component reads and writes (worker, serving, demo, trainer)."""

    section: ClassVar[str] = "feast"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_FEAST_")

    repo: Path = Field(DEFAULT_FEATURE_REPO, description="Feast feature repository (feature_store.yaml).")
    project: str = Field(
        "streamrec", pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$", description="Feast project (namespaces online rows)."
    )
    registry: Path | None = Field(
        None,
        description="Feast registry file ('streamrec features apply' writes it); unset: feature_store.yaml's.",
    )
    user_view: str = Field(FEAST_USER_STREAM_VIEW, description="Feature view holding the user stream features.")
    recent_items_field: str = Field(
        FEAST_USER_RECENT_ITEMS_FIELD, description="Field of the user view with the last item ids, newest first."
    )

    def resolved(self) -> FeastSettings:
        """The same settings with absolute paths (for processes that run in another directory)."""
        registry = self.registry.resolve() if self.registry is not None else None
        return self.model_copy(update={"repo": self.repo.resolve(), "registry": registry})


class StackSettings(ComponentSettings):
    """The embedded local stack: where it keeps binaries, state and logs."""

    section: ClassVar[str] = "stack"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_STACK_")

    run_dir: Path = Field(Path(".streamrec/run"), description="Logs, pid files and server state.")
    cache_dir: Path = Field(DEFAULT_CACHE_DIR, description="Downloaded Kafka jars and Triton binaries.")
    kafka_version: str = Field("4.1.1", description="Apache Kafka version resolved from Maven Central.")
    kafka_heap: str = Field("768m", description="Broker JVM -Xmx.")
    triton_wheel: str = Field(
        "nvidia-pytriton==0.7.0", description="PyPI wheel the tritonserver binary (2.51) is unpacked from."
    )
    start_timeout_s: float = Field(90.0, gt=0, description="Give up waiting for a component to be healthy.")
    with_triton: bool = Field(True, description="Start Triton with the stack.")


class PathsSettings(ComponentSettings):
    """Where datasets, the streaming archive and model exports live."""

    section: ClassVar[str] = "paths"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_PATHS_")

    data_root: Path = Field(Path(".streamrec/data"), description="Prepared datasets, one folder each (archive layout).")
    archive_root: Path = Field(
        Path(".streamrec/archive"), description="Archive the streaming archiver writes (archive layout)."
    )
    export_root: Path = Field(
        Path(".streamrec/exports"), description="Versioned model exports; CURRENT names the live one."
    )

    def dataset_root(self, name: str) -> Path:
        return self.data_root / name


def mask_url(url: str) -> str:
    """Hide the password part of a URL."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def describe(settings: ComponentSettings) -> list[tuple[str, str, str]]:
    """(env var, effective value with secrets masked, description) for each field."""
    rows = []
    prefix = type(settings).model_config.get("env_prefix", "")
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown = "***" if value.get_secret_value() else ""
        elif isinstance(value, str) and "://" in value:
            shown = mask_url(value)
        else:
            shown = "" if value is None else str(value)
        rows.append((f"{prefix}{name.upper()}", shown, field.description or ""))
    return rows


CORE_SETTINGS: tuple[type[ComponentSettings], ...] = (
    KafkaSettings,
    RedisSettings,
    BloomSettings,
    TritonSettings,
    FeastSettings,
    StackSettings,
    PathsSettings,
)

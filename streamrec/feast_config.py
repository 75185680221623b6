"""How every component opens the Feast repository: the yaml's defaults, overridden from streamrec settings.

``feature_repo/feature_store.yaml`` holds the local stack's values so that plain Feast tooling works; the
worker (writer) and serving (reader) must point at the same Redis, project and registry, which come from
settings (``REDIS_URL`` / ``STREAMREC_REDIS_*``, and :class:`streamrec.settings.FeastSettings`:
``STREAMREC_FEAST_REPO``, ``STREAMREC_FEAST_PROJECT``, ``STREAMREC_FEAST_REGISTRY``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from streamrec.errors import ConfigError
from streamrec.settings import FeastSettings


def feast_connection_string(redis_url: str) -> str:
    """``redis[s]://[user:password@]host:port/db`` -> Feast's ``host:port,db=N,password=...,ssl=true``."""
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"expected a redis:// or rediss:// URL, got {parts.scheme}://", source="REDIS_URL")
    out = [f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"]
    db = parts.path.lstrip("/")
    if db:
        out.append(f"db={int(db)}")
    if parts.username and parts.username != "default":
        out.append(f"username={unquote(parts.username)}")
    if parts.password:
        password = unquote(parts.password)
        if "," in password:  # Feast splits its connection string on commas
            raise ConfigError("Feast cannot use a Redis password containing ','", source="REDIS_URL")
        out.append(f"password={password}")
    if parts.scheme == "rediss":
        out.append("ssl=true")
    # Feast builds redis.Redis(host, port, ...), which since redis-py 6 retries every command 3 times with
    # exponential backoff (up to ~10 s against a dead server). Every streamrec caller has its own policy (the
    # worker retries with backoff, serving passes through and flags), so the client must fail at once.
    out.append("retry=null")
    return ",".join(out)


_MINIMAL_YAML = """project: {project}
provider: local
registry: {registry}
online_store:
  type: redis
  connection_string: "{connection}"
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def write_minimal_repo_config(repo: Path, project: str, redis_url: str) -> Path:
    """A ``feature_store.yaml`` for a throwaway repository (benchmarks, tests): Redis online store at
    ``redis_url``, file offline store, registry ``<repo>/registry.db``. Returns the yaml's path."""
    repo.mkdir(parents=True, exist_ok=True)
    path = repo / "feature_store.yaml"
    path.write_text(
        _MINIMAL_YAML.format(
            project=project, registry=repo / "registry.db", connection=feast_connection_string(redis_url)
        )
    )
    return path


def repo_config_dict(repo: Path, redis_url: str, project: str | None, registry: Path | None) -> dict[str, Any]:
    """The repository's feature_store.yaml with project, registry and the Redis connection overridden.

    A registry given here that is relative is relative to the working directory (like every path setting);
    the yaml's own relative registry is relative to the repository.
    """
    path = Path(repo) / "feature_store.yaml"
    if not path.is_file():
        raise ConfigError(f"no feature_store.yaml in {repo}", source="Feast repository")
    raw = yaml.safe_load(path.read_text())
    if project:
        raw["project"] = project
    if registry is not None:
        raw["registry"] = str(Path(registry).resolve())
    else:
        yaml_registry = Path(str(raw["registry"]))
        raw["registry"] = str(yaml_registry if yaml_registry.is_absolute() else Path(repo).resolve() / yaml_registry)
    if raw.get("online_store", {}).get("type") == "redis":
        raw["online_store"] = {**raw["online_store"], "connection_string": feast_connection_string(redis_url)}
    return raw


def open_feature_store(repo: Path, redis_url: str, project: str | None = None, registry: Path | None = None) -> Any:
    """A ``feast.FeatureStore`` over ``repo`` with the overrides of :func:`repo_config_dict`."""
    from feast import FeatureStore, RepoConfig

    raw = repo_config_dict(repo, redis_url, project, registry)
    config = RepoConfig(**raw)
    config.repo_path = Path(repo).resolve()
    return FeatureStore(repo_path=str(Path(repo).resolve()), config=config)


def open_configured_store(feast: FeastSettings, redis_url: str) -> Any:
    """A ``feast.FeatureStore`` as :class:`FeastSettings` describe it (repository, project, registry)."""
    return open_feature_store(feast.repo, redis_url, feast.project, feast.registry)

"""Feast I/O adapter: open the feature repository with streamrec's settings, push rows, apply the repo.

``feature_repo/feature_store.yaml`` carries the local stack's defaults; here the project, registry and
Redis connection are overridden from settings (:class:`~streamrec.settings.FeastSettings`, ``REDIS_URL``
honoured), so tests and deployments point the same repository at their own store. Feast is imported
lazily: it takes seconds to import.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from streamrec import feast_config
from streamrec.archive import ITEMS_FILE, USERS_FILE, read_items, read_users
from streamrec.errors import ConfigError, DataError, StoreUnavailableError
from streamrec.features import (
    FEAST_ITEM_CONTENT_VIEW,
    FEAST_ITEM_ENTITY_KEY,
    FEAST_USER_ENTITY_KEY,
    FEAST_USER_PROFILE_VIEW,
    PROFILE_PREFIX,
)
from streamrec.settings import FeastSettings, PathsSettings, RedisSettings
from streams.feast_schema import TIMESTAMP_FIELD

#: Batch rows are valid from this instant on (profiles and item content carry no time of their own).
BATCH_VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)
OFFLINE_DIR = "feast"  # under the archive root: the offline store's files


REPO_SETTING = "STREAMREC_FEAST_REPO"


def repo_config_dict(feast: FeastSettings, redis: RedisSettings) -> dict[str, Any]:
    try:
        return feast_config.repo_config_dict(feast.repo, redis.effective_url, feast.project, feast.registry)
    except ConfigError as exc:
        raise ConfigError(str(exc), source=REPO_SETTING) from None


def open_store(feast: FeastSettings, redis: RedisSettings) -> Any:
    """A ``feast.FeatureStore`` on the repository, with the overrides applied (the registry's folder created)."""
    raw = repo_config_dict(feast, redis)
    registry = Path(raw["registry"])
    registry.parent.mkdir(parents=True, exist_ok=True)
    return feast_config.open_configured_store(feast.model_copy(update={"registry": registry}), redis.effective_url)


class FeastPush:
    """Push function ``push``: ``FeatureStore.push`` of a DataFrame through the push source (online only)."""

    def __init__(self, store: Any) -> None:
        from feast.data_source import PushMode

        self.store = store
        self.mode = PushMode.ONLINE

    def __call__(self, source: str, rows: list[dict[str, Any]]) -> None:
        self.store.push(source, pd.DataFrame(rows), to=self.mode)


def _encoder(dtype: Any) -> Callable[[Any], Any]:
    from feast.protos.feast.types.Value_pb2 import StringList
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.types import Array, Float32, Float64, Int32, Int64, String

    if dtype == Int64:
        return lambda v: ValueProto(int64_val=int(v))
    if dtype == Int32:
        return lambda v: ValueProto(int32_val=int(v))
    if dtype in (Float64, Float32):
        return lambda v: ValueProto(double_val=float(v)) if dtype == Float64 else ValueProto(float_val=float(v))
    if dtype == String:
        return lambda v: ValueProto(string_val=str(v))
    if dtype == Array(String):
        return lambda v: ValueProto(string_list_val=StringList(val=[str(x) for x in v]))
    raise ConfigError(f"no fast encoder for Feast type {dtype}", source="STREAMREC_STREAMS_FEAST_WRITE")


class FeastDirectWrite:
    """Push function ``direct``: the push sources' feature views written with Feast's own online-store writer.

    ``FeatureStore.push`` spends most of its time outside the store: a registry lookup per call, a
    DataFrame -> Arrow -> protobuf conversion column by column. This path resolves the views of each push
    source once and builds the protobuf values straight from the row dicts, then writes them with the
    repository's online store through Feast's public ``OnlineStore`` interface (the store class its
    ``online_store.type`` names, ``online_write_batch``) -- the call ``push`` ends in, so the stored rows are
    byte-identical (tests/streams compare both paths through ``get_online_features``).
    """

    def __init__(self, store: Any, sources: Sequence[str]) -> None:
        from feast.infra.online_stores.helpers import get_online_store_from_config
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        self.store = store
        self.online_store: Any = get_online_store_from_config(store.config.online_store)
        self._entity_key = EntityKey
        self._value = ValueProto
        self.views: dict[str, list[tuple[Any, str, list[tuple[str, Callable[[Any], Any]]]]]] = {}
        for fv in store.list_feature_views():
            source = getattr(fv, "stream_source", None)
            if source is None or source.name not in sources:
                continue
            join_keys = [col.name for col in fv.entity_columns]
            if len(join_keys) != 1:
                raise ConfigError(f"view {fv.name} has {len(join_keys)} join keys; expected 1", source="feature_repo")
            encoders = [(f.name, _encoder(f.dtype)) for f in fv.features]
            self.views.setdefault(source.name, []).append((fv, join_keys[0], encoders))
        missing = [s for s in sources if s not in self.views]
        if missing:
            raise ConfigError(f"push sources {missing} have no feature view; run: streamrec features apply")

    def __call__(self, source: str, rows: list[dict[str, Any]]) -> None:
        value, entity_key = self._value, self._entity_key
        for fv, join_key, encoders in self.views[source]:
            data = [
                (
                    entity_key(join_keys=[join_key], entity_values=[value(string_val=row[join_key])]),
                    {name: enc(row[name]) for name, enc in encoders},
                    row[TIMESTAMP_FIELD],
                    None,
                )
                for row in rows
            ]
            self.online_store.online_write_batch(self.store.config, fv, data, progress=None)


# ---------------------------------------------------------------------------------------------------- apply


def _ref(payload: object) -> str:
    """Content address of an embedding's input: the same text or image always maps to the same ref."""
    if payload is None or (isinstance(payload, float) and pd.isna(payload)):
        return ""
    data = payload.encode() if isinstance(payload, str) else bytes(payload)  # type: ignore[call-overload]
    return f"sha256:{hashlib.sha256(data).hexdigest()}" if data else ""


def item_content_frame(items: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            FEAST_ITEM_ENTITY_KEY: items["item_id"].astype(str),
            "category": items["category"].fillna("unknown").astype(str),
            "price": pd.to_numeric(items["price"], errors="coerce").fillna(0.0).astype("float64"),
            "text_embedding_ref": [_ref(t) for t in items["text"]],
            "image_embedding_ref": [_ref(p) for p in items["image_png"]],
            TIMESTAMP_FIELD: BATCH_VALID_FROM,
        }
    )


def user_profile_frame(users: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({FEAST_USER_ENTITY_KEY: users["user_id"].astype(str)})
    for col in sorted(c for c in users.columns if c.startswith(PROFILE_PREFIX)):
        frame[col] = users[col].astype("string").fillna("").astype(str)
    frame[TIMESTAMP_FIELD] = BATCH_VALID_FROM
    return frame


def load_definitions(repo: Path) -> Callable[..., list[Any]]:
    path = repo / "definitions.py"
    spec = importlib.util.spec_from_file_location("streamrec_feature_repo_definitions", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {path}", source=REPO_SETTING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build: Callable[..., list[Any]] = module.build_objects
    return build


@dataclass
class ApplySummary:
    project: str
    registry: str
    objects: list[str]
    tables_from: str | None
    materialized: dict[str, int] = field(default_factory=dict)


def _tables_root(paths: PathsSettings, dataset: str | None) -> Path | None:
    if dataset:
        root = paths.dataset_root(dataset)
        if not (root / ITEMS_FILE).is_file():
            raise DataError(f"dataset {dataset!r} is not prepared at {root}; run: streamrec data prepare")
        return root
    if (paths.archive_root / ITEMS_FILE).is_file():
        return paths.archive_root
    return None


def apply_repo(
    feast: FeastSettings,
    redis: RedisSettings,
    paths: PathsSettings,
    dataset: str | None = None,
    materialize: bool = False,
    echo: Callable[[str], None] = lambda _: None,
) -> ApplySummary:
    """Write the offline tables, apply every object, optionally load the batch views into the online store.

    The batch views' tables come from ``--dataset``'s root, else the archive root when it holds an
    items.parquet; without either, only the stream views (and their entities) are applied.
    """
    offline = paths.archive_root / OFFLINE_DIR
    root = _tables_root(paths, dataset)
    profile_fields: Sequence[str] = ()
    frames: dict[str, pd.DataFrame] = {}
    if root is not None:
        offline.mkdir(parents=True, exist_ok=True)
        frames[FEAST_ITEM_CONTENT_VIEW] = item_content_frame(read_items(root))
        if (root / USERS_FILE).is_file():
            frames[FEAST_USER_PROFILE_VIEW] = user_profile_frame(read_users(root))
            profile_fields = [c for c in frames[FEAST_USER_PROFILE_VIEW].columns if c.startswith(PROFILE_PREFIX)]
        for name, frame in frames.items():
            frame.to_parquet(offline / f"{name}.parquet", index=False)
        echo(f"offline tables from {root} written to {offline}")
    objects = load_definitions(feast.repo)(paths.archive_root.resolve(), offline.resolve(), profile_fields)
    if root is None:
        # No tables to back the batch views: apply the streaming side only.
        batch_views = (FEAST_USER_PROFILE_VIEW, FEAST_ITEM_CONTENT_VIEW)
        objects = [o for o in objects if getattr(o, "name", "") not in batch_views]
        echo("no items.parquet in the archive root and no --dataset: batch views skipped")
    if FEAST_USER_PROFILE_VIEW not in frames:
        objects = [o for o in objects if getattr(o, "name", "") != FEAST_USER_PROFILE_VIEW]
    store = open_store(feast, redis)
    try:
        store.apply(objects, partial=True)
    except Exception as exc:  # Feast raises assorted types (registry, validation, Redis)
        raise StoreUnavailableError(f"feast apply failed: {str(exc).splitlines()[0][:300]}") from None
    summary = ApplySummary(
        feast.project,
        str(store.config.registry.path if hasattr(store.config.registry, "path") else store.config.registry),
        sorted(f"{type(o).__name__}:{o.name}" for o in objects),
        str(root) if root is not None else None,
    )
    if materialize:
        for name, frame in frames.items():
            for start in range(0, len(frame), 5000):
                store.write_to_online_store(name, frame.iloc[start : start + 5000].reset_index(drop=True))
            summary.materialized[name] = len(frame)
            echo(f"loaded {len(frame)} rows of {name} into the online store")
    return summary

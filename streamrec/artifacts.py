"""The model export: the contract between the trainer (writer) and serving (reader).

Layout under ``export_root``::

    CURRENT                       name of the live version (replaced atomically)
    versions/<version>/           version = "v<YYYYMMDDHHMMSS>-<6 hex>", so names sort by creation time
        metadata.json             :class:`ExportMetadata`
        query_tower.pt            TorchScript: forward(Dict[str, Tensor]) keyed by features.QUERY_TOWER_INPUTS
                                  {user_idx[B], profile_idx[B,P], recent_items[B,R], context_idx[B,3]}
                                  -> Float[B,D], L2-normalised
        ranker.pt                 TorchScript: forward(Dict[str, Tensor]) keyed by features.RANKER_INPUTS
                                  {the four above, user_dense[B,U], item_idx[B,N], item_cat[B,N],
                                  item_dense[B,N,Q], item_text[B,N,T], item_image[B,N,I]} -> logits[B,N]
        item_content_encoder.pt   TorchScript: forward(Dict[str, Tensor]) keyed by features.CONTENT_ENCODER_INPUTS
                                  {item_cat[M], item_price[M], text_embedding[M,R_t], image_embedding[M,R_i]}
                                  -> Dict keyed by features.CONTENT_ENCODER_OUTPUTS {item_embedding[M,D],
                                  item_dense[M,Q], item_text[M,T], item_image[M,I]}: an item added after
                                  training, embedded from its content alone (rows to append to the index and
                                  to item_features)
        item_index.faiss          FAISS index over item_embeddings (row r <-> item index r + 1)
        item_ids.json             list; position i <-> item index i + 1 (index 0 is padding / unknown)
        user_ids.json             same convention for users
        item_embeddings.npy       float32 [n_items, D]
        item_features.npz         category_idx, dense, text, image, popularity (one row per item)
        categories.json           category vocabulary; position i <-> category index i (0 = unknown)
        user_profiles.npz         profile_idx int64 [n_users, P] (row u <-> user index u + 1)

Index inputs are Long; an index outside its table (e.g. user_idx > n_users) is read by both models as 0,
"unknown", without a host-device sync; a missing dict key fails the call with ``KeyError: <name>``.
FORMAT_VERSION names this contract: 2 = the models take one dict (1 took positional tensors), so a reader
rejects an export written for another calling convention at its metadata, before loading a model.

This module needs numpy and the standard library only (plus pydantic for the metadata model): serving
stages load the TorchScript files themselves with ``torch.jit.load``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamrec.errors import ArtifactError

FORMAT_VERSION: Final = 2
CURRENT_FILE = "CURRENT"
VERSIONS_DIR = "versions"
METADATA_FILE = "metadata.json"
ITEM_IDS_FILE = "item_ids.json"
USER_IDS_FILE = "user_ids.json"
ITEM_EMBEDDINGS_FILE = "item_embeddings.npy"
ITEM_FEATURES_FILE = "item_features.npz"
CATEGORIES_FILE = "categories.json"
USER_PROFILES_FILE = "user_profiles.npz"
QUERY_TOWER_FILE = "query_tower.pt"
RANKER_FILE = "ranker.pt"
CONTENT_ENCODER_FILE = "item_content_encoder.pt"
#: ``ExportMetadata.models`` keys.
QUERY_TOWER_MODEL = "query_tower"
RANKER_MODEL = "ranker"
CONTENT_ENCODER_MODEL = "item_content_encoder"
INDEX_FILE = "item_index.faiss"
ITEM_FEATURE_ARRAYS = ("category_idx", "dense", "text", "image", "popularity")
VERSION_PATTERN = re.compile(r"^v\d{14}-[0-9a-f]{6}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingWindow(_Strict):
    start: str = Field(description="First date (UTC, YYYY-MM-DD) of the training events.")
    end: str = Field(description="Last date (UTC, YYYY-MM-DD) of the training events.")


class FeatureSpec(_Strict):
    """Inputs the exported models expect, in order. Serving checks its own features against this."""

    user_count_features: list[str]
    recent_items_len: int = Field(ge=1)
    profile_fields: list[str]
    profile_vocab_sizes: list[int]
    context_fields: list[str]
    item_dense_features: list[str]
    text_dim: int = Field(ge=0)
    image_dim: int = Field(ge=0)
    image_model: str | None = Field(description="CLIP model of the image embeddings; null: images are zeros.")
    text_model: str | None = None
    recent_item_event_types: list[str] = Field(default_factory=list)
    text_embedding_dim: int | None = Field(
        None, ge=1, description="Width of the raw text embedding the content encoder takes (384 for MiniLM)."
    )
    image_embedding_dim: int = Field(0, ge=0, description="Width of the raw CLIP embedding it takes; 0: no CLIP.")


class ModelFile(_Strict):
    file: str
    format: Literal["torchscript"] = "torchscript"


class IndexInfo(_Strict):
    file: str
    type: str = Field(description="FAISS index description, e.g. IndexFlatIP, IVF256,Flat, HNSW32.")
    metric: Literal["inner_product"] = "inner_product"


class ExportMetadata(_Strict):
    format_version: Literal[2] = FORMAT_VERSION
    version: str
    created_at: str
    kind: Literal["full", "finetune"]
    parent_version: str | None = None
    dataset: str
    training_window: TrainingWindow
    metrics: dict[str, float] = Field(default_factory=dict)
    embedding_dim: int = Field(ge=1)
    n_items: int = Field(ge=1)
    n_users: int = Field(ge=0)
    feature_spec: FeatureSpec
    models: dict[str, ModelFile]
    index: IndexInfo
    training_state: str | None = Field(None, description="Trainer checkpoint file (fine-tuning starts here).")


@dataclass(frozen=True)
class ItemArrays:
    """Per-item arrays; row r is item index r + 1."""

    embeddings: np.ndarray  # float32 [n_items, D]
    category_idx: np.ndarray  # int64 [n_items]
    dense: np.ndarray  # float32 [n_items, Q]
    text: np.ndarray  # float32 [n_items, T]
    image: np.ndarray  # float32 [n_items, I]
    popularity: np.ndarray  # float32 [n_items]


@dataclass(frozen=True)
class IdMaps:
    item_ids: list[str]
    user_ids: list[str]
    categories: list[str]

    def item_index(self) -> dict[str, int]:
        return {item: i + 1 for i, item in enumerate(self.item_ids)}

    def user_index(self) -> dict[str, int]:
        return {user: i + 1 for i, user in enumerate(self.user_ids)}


def new_version_name(now: datetime | None = None) -> str:
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return f"v{when:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def versions_root(export_root: Path) -> Path:
    return Path(export_root) / VERSIONS_DIR


def version_dir(export_root: Path, version: str) -> Path:
    if not VERSION_PATTERN.match(version):
        raise ArtifactError(f"not a version name: {version!r} (expected v<YYYYMMDDHHMMSS>-<6 hex>)")
    return versions_root(export_root) / version


def list_versions(export_root: Path) -> list[str]:
    """Published versions, oldest first (staging folders are ignored)."""
    root = versions_root(export_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name))


def read_current(export_root: Path) -> str:
    path = Path(export_root) / CURRENT_FILE
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        raise ArtifactError(f"no published model: {path} does not exist") from None
    if not VERSION_PATTERN.match(name):
        raise ArtifactError(f"{path} holds {name[:40]!r}, not a version name")
    if not version_dir(export_root, name).is_dir():
        raise ArtifactError(f"{path} points to {name}, which is not under {versions_root(export_root)}")
    return name


def current_dir(export_root: Path) -> Path:
    return version_dir(export_root, read_current(export_root))


def load_metadata(directory: Path) -> ExportMetadata:
    path = Path(directory) / METADATA_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"export metadata not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"corrupt export metadata {path}: {exc}") from None
    found = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(found, int) and found != FORMAT_VERSION:
        raise ArtifactError(
            f"export {path.parent.name} has format_version {found}, this reader needs {FORMAT_VERSION}: "
            "export it again with the current trainer"
        )
    try:
        return ExportMetadata.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ArtifactError(f"invalid export metadata {path}: {loc}: {first['msg']}") from None


def _read_json_list(path: Path) -> list[str]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"missing export file: {path}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"corrupt export file {path}: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ArtifactError(f"{path} must hold a JSON list of strings")
    return value


def load_id_maps(directory: Path, metadata: ExportMetadata | None = None) -> IdMaps:
    directory = Path(directory)
    meta = metadata or load_metadata(directory)
    maps = IdMaps(
        item_ids=_read_json_list(directory / ITEM_IDS_FILE),
        user_ids=_read_json_list(directory / USER_IDS_FILE),
        categories=_read_json_list(directory / CATEGORIES_FILE),
    )
    if len(maps.item_ids) != meta.n_items:
        raise ArtifactError(f"{ITEM_IDS_FILE} lists {len(maps.item_ids)} items, metadata says {meta.n_items}")
    if len(maps.user_ids) != meta.n_users:
        raise ArtifactError(f"{USER_IDS_FILE} lists {len(maps.user_ids)} users, metadata says {meta.n_users}")
    return maps


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ArtifactError(f"missing export file: {path}") from None
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"corrupt export file {path}: {exc}") from None


def _load_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [n for n in names if n not in data.files]
            if missing:
                raise ArtifactError(f"{path} lacks arrays {missing}")
            return {n: data[n] for n in names}
    except FileNotFoundError:
        raise ArtifactError(f"missing export file: {path}") from None
    except ArtifactError:
        raise
    except Exception as exc:  # BadZipFile, ValueError, OSError: a truncated or foreign file
        raise ArtifactError(f"corrupt export file {path}: {exc}") from None


def _expect_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise ArtifactError(f"{name} has shape {array.shape}, the feature spec needs {shape}")


def load_item_arrays(directory: Path, metadata: ExportMetadata | None = None) -> ItemArrays:
    """Item embeddings and features, checked against the metadata's sizes and feature spec."""
    directory = Path(directory)
    meta = metadata or load_metadata(directory)
    n, spec = meta.n_items, meta.feature_spec
    embeddings = _load_npy(directory / ITEM_EMBEDDINGS_FILE)
    _expect_shape(ITEM_EMBEDDINGS_FILE, embeddings, (n, meta.embedding_dim))
    feats = _load_npz(directory / ITEM_FEATURES_FILE, ITEM_FEATURE_ARRAYS)
    _expect_shape("item_features.category_idx", feats["category_idx"], (n,))
    _expect_shape("item_features.dense", feats["dense"], (n, len(spec.item_dense_features)))
    _expect_shape("item_features.text", feats["text"], (n, spec.text_dim))
    _expect_shape("item_features.image", feats["image"], (n, spec.image_dim))
    _expect_shape("item_features.popularity", feats["popularity"], (n,))
    return ItemArrays(
        embeddings=embeddings.astype(np.float32, copy=False),
        category_idx=feats["category_idx"].astype(np.int64, copy=False),
        dense=feats["dense"].astype(np.float32, copy=False),
        text=feats["text"].astype(np.float32, copy=False),
        image=feats["image"].astype(np.float32, copy=False),
        popularity=feats["popularity"].astype(np.float32, copy=False),
    )


def load_user_profiles(directory: Path, metadata: ExportMetadata | None = None) -> np.ndarray:
    """int64 [n_users, P]; row u is user index u + 1."""
    directory = Path(directory)
    meta = metadata or load_metadata(directory)
    profiles = _load_npz(directory / USER_PROFILES_FILE, ("profile_idx",))["profile_idx"]
    _expect_shape("user_profiles.profile_idx", profiles, (meta.n_users, len(meta.feature_spec.profile_fields)))
    return profiles.astype(np.int64, copy=False)


def check_version_dir(directory: Path) -> ExportMetadata:
    """Everything the metadata names is there and consistent; returns the metadata."""
    directory = Path(directory)
    meta = load_metadata(directory)
    for name, model in meta.models.items():
        if not (directory / model.file).is_file():
            raise ArtifactError(f"model {name}: missing file {directory / model.file}")
    if not (directory / meta.index.file).is_file():
        raise ArtifactError(f"missing index file {directory / meta.index.file}")
    load_id_maps(directory, meta)
    load_item_arrays(directory, meta)
    load_user_profiles(directory, meta)
    return meta


def _write_current(export_root: Path, version: str) -> None:
    path = Path(export_root) / CURRENT_FILE
    tmp = path.with_name(f".{CURRENT_FILE}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w") as handle:
        handle.write(version + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def publish(export_root: Path, staged_dir: Path, make_current: bool = True) -> Path:
    """Move a complete staged export into ``versions/<version>`` and (optionally) flip CURRENT to it.

    The staged folder is validated first, copied into ``versions/<version>.tmp-xxxx`` (or renamed when
    on the same file system) and then renamed, so readers never see a half-written version.
    """
    staged_dir = Path(staged_dir)
    meta = check_version_dir(staged_dir)
    final = version_dir(export_root, meta.version)
    if final.exists():
        raise ArtifactError(f"version {meta.version} is already published under {final}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{meta.version}.tmp-{secrets.token_hex(3)}")
    try:
        os.rename(staged_dir, tmp)
    except OSError:
        shutil.copytree(staged_dir, tmp)
    os.rename(tmp, final)
    if make_current:
        _write_current(export_root, meta.version)
    return final


def write_json(path: Path, value: Any) -> None:
    Path(path).write_text(json.dumps(value, indent=2, sort_keys=False) + "\n")

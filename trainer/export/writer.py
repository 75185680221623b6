"""Write a version folder (see :mod:`streamrec.artifacts`) and read its trainer state back for fine-tuning."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec import artifacts as art
from streamrec.errors import ArtifactError
from streamrec.features import CONTEXT_FIELDS, RECENT_ITEMS_LEN, USER_COUNT_FEATURES
from trainer.data.history import RECENT_ITEM_TYPES
from trainer.data.loading import Dataset, UserTable
from trainer.embeddings.content import ContentEmbeddings, Projection
from trainer.export.index import build_index, write_index
from trainer.models.dlrm import DLRMConfig, DLRMRanker, ExportedRanker
from trainer.models.two_tower import (
    ExportedItemContentEncoder,
    ExportedQueryTower,
    ItemTower,
    TwoTower,
    TwoTowerConfig,
)
from trainer.settings import TrainerSettings
from trainer.train.pipeline import TrainedModels
from trainer.train.tables import ITEM_DENSE_FEATURES, ItemTables

TRAINING_STATE_FILE = "training_state.pt"


def feature_spec(users: UserTable, content: ContentEmbeddings) -> art.FeatureSpec:
    return art.FeatureSpec(
        user_count_features=list(USER_COUNT_FEATURES),
        recent_items_len=RECENT_ITEMS_LEN,
        profile_fields=list(users.profile_fields),
        profile_vocab_sizes=users.profile_vocab_sizes,
        context_fields=list(CONTEXT_FIELDS),
        item_dense_features=list(ITEM_DENSE_FEATURES),
        text_dim=int(content.text.shape[1]),
        image_dim=int(content.image.shape[1]),
        image_model=content.image_model,
        text_model=content.text_model,
        recent_item_event_types=list(RECENT_ITEM_TYPES),
        text_embedding_dim=content.text_projection.raw_dim if content.text_projection else None,
        image_embedding_dim=content.image_projection.raw_dim if content.image_projection else 0,
    )


def content_encoder(tower: ItemTower, content: ContentEmbeddings) -> ExportedItemContentEncoder:
    """The content-only item encoder over ``tower`` with the catalog's projections."""
    if content.text_projection is None or content.image_projection is None:
        raise ArtifactError("the content projections are unknown (a version exported before the content encoder)")
    text, image = content.text_projection, content.image_projection
    return ExportedItemContentEncoder(
        tower,
        torch.as_tensor(text.mean),
        torch.as_tensor(text.components),
        text.scale,
        torch.as_tensor(image.mean),
        torch.as_tensor(image.components),
        image.scale,
    )


def script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, still what Triton loads
        return torch.jit.script(module)


def stage_version(
    export_root: Path,
    models: TrainedModels,
    dataset: Dataset,
    settings: TrainerSettings,
    *,
    kind: str,
    window: tuple[str, str],
    metrics: dict[str, float],
    parent_version: str | None = None,
    item_embeddings: np.ndarray | None = None,
) -> Path:
    """Write every file of a new version into a staging folder next to ``versions/``; returns its path."""
    version = art.new_version_name()
    staging = art.versions_root(export_root) / f".staging-{version}"
    staging.mkdir(parents=True)
    try:
        two_tower = models.two_tower.cpu().eval()
        ranker = models.ranker.cpu().eval()
        script(ExportedQueryTower(two_tower.query_tower)).save(str(staging / art.QUERY_TOWER_FILE))
        script(ExportedRanker(ranker)).save(str(staging / art.RANKER_FILE))
        model_files = {
            art.QUERY_TOWER_MODEL: art.ModelFile(file=art.QUERY_TOWER_FILE),
            art.RANKER_MODEL: art.ModelFile(file=art.RANKER_FILE),
        }
        if models.content.text_projection is not None and models.content.image_projection is not None:
            encoder = content_encoder(two_tower.item_tower, models.content)
            script(encoder).save(str(staging / art.CONTENT_ENCODER_FILE))
            model_files[art.CONTENT_ENCODER_MODEL] = art.ModelFile(file=art.CONTENT_ENCODER_FILE)
        embeddings = item_embeddings if item_embeddings is not None else models.item_embeddings()
        item_rows = embeddings[1:]
        np.save(staging / art.ITEM_EMBEDDINGS_FILE, item_rows.astype(np.float32))
        index, index_name = build_index(item_rows, settings)
        write_index(index, str(staging / art.INDEX_FILE))
        items = models.items
        np.savez(
            staging / art.ITEM_FEATURES_FILE,
            category_idx=items.category_idx[1:].astype(np.int64),
            dense=items.dense[1:].astype(np.float32),
            text=items.text[1:].astype(np.float32),
            image=items.image[1:].astype(np.float32),
            popularity=items.popularity[1:].astype(np.float32),
        )
        np.savez(staging / art.USER_PROFILES_FILE, profile_idx=dataset.users.profile_idx[1:].astype(np.int64))
        art.write_json(staging / art.ITEM_IDS_FILE, dataset.catalog.item_ids)
        art.write_json(staging / art.USER_IDS_FILE, dataset.users.user_ids)
        art.write_json(staging / art.CATEGORIES_FILE, ["<unknown>", *dataset.catalog.categories])
        torch.save(
            {
                "two_tower_config": asdict(two_tower.config),
                "two_tower": two_tower.state_dict(),
                "ranker_config": asdict(ranker_config(ranker, dataset, models.content)),
                "ranker": ranker.state_dict(),
                "profile_fields": dataset.users.profile_fields,
                "profile_vocabs": dataset.users.profile_vocabs,
                "item_embeddings": embeddings,
                "text_projection": _projection_state(models.content.text_projection),
                "image_projection": _projection_state(models.content.image_projection),
            },
            staging / TRAINING_STATE_FILE,
        )
        meta = art.ExportMetadata(
            version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            kind=kind,  # type: ignore[arg-type]
            parent_version=parent_version,
            dataset=dataset.name,
            training_window=art.TrainingWindow(start=window[0], end=window[1]),
            metrics={k: float(v) for k, v in metrics.items()},
            embedding_dim=int(item_rows.shape[1]),
            n_items=dataset.catalog.n_items,
            n_users=dataset.users.n_users,
            feature_spec=feature_spec(dataset.users, models.content),
            models=model_files,
            index=art.IndexInfo(file=art.INDEX_FILE, type=index_name),
            training_state=TRAINING_STATE_FILE,
        )
        (staging / art.METADATA_FILE).write_text(meta.model_dump_json(indent=2) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _projection_state(projection: Projection | None) -> dict[str, object] | None:
    return None if projection is None else projection.to_state()


def _projection(state: dict[str, Any], key: str) -> Projection | None:
    value = state.get(key)
    return None if value is None else Projection.from_state(value)


def ranker_config(ranker: DLRMRanker, dataset: Dataset, content: ContentEmbeddings) -> DLRMConfig:
    return DLRMConfig(
        n_users=ranker.n_users - 1,
        n_items=ranker.n_items - 1,
        n_categories=ranker.n_categories - 1,
        profile_vocab_sizes=list(ranker.profile_sizes),
        n_user_dense=len(USER_COUNT_FEATURES),
        n_item_dense=len(ITEM_DENSE_FEATURES),
        text_dim=int(content.text.shape[1]),
        image_dim=int(content.image.shape[1]),
    )


def load_trained(directory: Path) -> tuple[TrainedModels, art.ExportMetadata, dict[str, Any]]:
    """Rebuild the in-memory models of an exported version (fine-tuning starts from them)."""
    meta = art.check_version_dir(directory)
    if not meta.training_state:
        raise ArtifactError(f"version {meta.version} has no training state; it cannot be fine-tuned")
    try:
        state = torch.load(directory / meta.training_state, map_location="cpu", weights_only=False)
        two_tower = TwoTower(TwoTowerConfig(**state["two_tower_config"]))
        two_tower.load_state_dict(state["two_tower"])
        ranker = DLRMRanker(DLRMConfig(**state["ranker_config"]))
        ranker.load_state_dict(state["ranker"])
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"corrupt training state in {directory}: {str(exc).splitlines()[0]}") from None
    arrays = art.load_item_arrays(directory, meta)
    pad = np.zeros((1,), dtype=np.float32)
    items = ItemTables(
        category_idx=np.concatenate([[0], arrays.category_idx]).astype(np.int64),
        dense=np.concatenate([np.zeros((1, arrays.dense.shape[1]), np.float32), arrays.dense]),
        text=np.concatenate([np.zeros((1, arrays.text.shape[1]), np.float32), arrays.text]),
        image=np.concatenate([np.zeros((1, arrays.image.shape[1]), np.float32), arrays.image]),
        popularity=np.concatenate([pad, arrays.popularity]),
    )
    profiles = art.load_user_profiles(directory, meta)
    content = ContentEmbeddings(
        text=items.text,
        image=items.image,
        text_model=meta.feature_spec.text_model,
        image_model=meta.feature_spec.image_model,
        notes=[],
        text_projection=_projection(state, "text_projection"),
        image_projection=_projection(state, "image_projection"),
    )
    models = TrainedModels(
        two_tower=two_tower.eval(),
        ranker=ranker.eval(),
        items=items,
        content=content,
        profiles=np.concatenate([np.zeros((1, profiles.shape[1]), np.int64), profiles]),
    )
    return models, meta, state

"""Build a stage from an export and a :class:`StageConfig` (the JSON written next to each Triton model version)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serving.pipeline.base import Stage
from serving.pipeline.export import ExportReader
from serving.pipeline.rerank import RerankStage
from serving.pipeline.stages import (
    BloomStage,
    ContextStage,
    FilterStage,
    ItemFeatureCache,
    ItemFeatureStage,
    QueryTowerStage,
    RankerStage,
    RetrievalStage,
    UserFeatureStage,
)
from serving.pipeline.stores import BloomChecker, FeastUserFeatures
from serving.settings import ServingSettings
from streamrec.settings import BloomSettings

#: Stage name -> class, in pipeline order. Triton model names are ``recommend_<stage>``.
STAGES: dict[str, type[Stage]] = {
    cls.name: cls
    for cls in (
        ContextStage,
        UserFeatureStage,
        QueryTowerStage,
        RetrievalStage,
        BloomStage,
        FilterStage,
        ItemFeatureStage,
        RankerStage,
        RerankStage,
    )
}


class StageConfig(BaseModel):
    """Everything a stage needs besides the export files; materialised by ``streamrec serve prepare``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    export_dir: Path
    export_version: str
    serving: ServingSettings = Field(default_factory=ServingSettings)
    bloom: BloomSettings = Field(default_factory=BloomSettings)
    redis_url: str = "redis://127.0.0.1:16379/0"
    device: str = "cpu"

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> StageConfig:
        return cls.model_validate(json.loads(Path(path).read_text()))


def build_stage(name: str, config: StageConfig, export: ExportReader | None = None) -> Stage:
    """One stage, loading only the export parts it uses."""
    export = export or ExportReader(config.export_dir, config.device)
    s = config.serving
    if name == ContextStage.name:
        return ContextStage.from_export(export)
    if name == UserFeatureStage.name:
        source = (
            FeastUserFeatures(
                s.feast_repo,
                s.feast_user_view,
                s.recent_items_field,
                export.spec.user_count_features,
                redis_url=config.redis_url,
                retry_s=s.store_retry_s,
                project=s.feast_project,
                registry=s.feast_registry,
            )
            if s.features_enabled
            else None
        )
        return UserFeatureStage(source, export.item_index, export.spec)
    if name == QueryTowerStage.name:
        _threads(s.torch_threads)
        return QueryTowerStage(export.query_tower, config.device)
    if name == RetrievalStage.name:
        if config.device != "cpu" and export.metadata.index.type == "IndexFlatIP":
            return RetrievalStage(s.retrieval_candidates, embeddings=export.items.embeddings, device=config.device)
        return RetrievalStage(s.retrieval_candidates, index=export.faiss_index)
    if name == BloomStage.name:
        checker = (
            BloomChecker(config.redis_url, config.bloom, timeout_s=s.store_timeout_s, retry_s=s.store_retry_s)
            if s.bloom_enabled
            else None
        )
        return BloomStage(checker, export.id_maps.item_ids)
    if name == FilterStage.name:
        return FilterStage(export.item_index, export.id_maps.categories, export.items.category_idx)
    if name == ItemFeatureStage.name:
        return ItemFeatureStage(ItemFeatureCache(export.items))
    if name == RankerStage.name:
        _threads(s.torch_threads)
        return RankerStage(export.ranker, ItemFeatureCache(export.items).widths, config.device)
    if name == RerankStage.name:
        return RerankStage(
            export.id_maps.item_ids,
            export.items.embeddings,
            export.version,
            diversity=s.diversity,
            max_per_category=s.max_per_category,
            temperature=s.temperature,
            mmr_pool=s.mmr_pool,
            max_k=s.max_k,
        )
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def stage_config_dict(config: StageConfig) -> dict[str, Any]:
    return json.loads(config.model_dump_json())


def warm_batch(export: ExportReader, serving: ServingSettings) -> dict[str, Any]:
    """A one-row batch holding every tensor of the pipeline (anonymous user: no store I/O), for warm-up runs."""
    import numpy as np

    from serving.pipeline import stages as st
    from serving.pipeline.reference import request_tensors
    from streamrec.pipeline_client import RecommendRequest

    spec = export.spec
    n = min(serving.retrieval_candidates, export.metadata.n_items)
    cand = np.zeros((1, serving.retrieval_candidates), dtype=np.int64)
    cand[0, :n] = np.arange(1, n + 1)
    cache = ItemFeatureCache(export.items)
    category, content = cache.lookup(cand)
    batch: dict[str, Any] = dict(request_tensors([RecommendRequest(user_id=None, timestamp_ms=1_767_225_600_000)]))
    batch.update(
        {
            st.USER_IDX: np.zeros((1, 1), np.int64),
            st.PROFILE_IDX: np.zeros((1, len(spec.profile_fields)), np.int64),
            st.CONTEXT_IDX: np.zeros((1, 3), np.int64),
            st.CONTEXT_FLAGS: np.zeros((1, 1), np.int32),
            st.RECENT_ITEMS: np.zeros((1, spec.recent_items_len), np.int64),
            st.USER_DENSE: np.zeros((1, len(spec.user_count_features)), np.float32),
            st.FEATURE_FLAGS: np.zeros((1, 1), np.int32),
            st.QUERY: export.items.embeddings[:1].astype(np.float32),
            st.CANDIDATES: cand,
            st.BLOOM_CANDIDATES: cand,
            st.BLOOM_FLAGS: np.zeros((1, 1), np.int32),
            st.FILTERED_CANDIDATES: cand,
            st.ITEM_CATEGORY: category,
            st.ITEM_CONTENT: content,
            st.RANK_SCORES: np.zeros((1, cand.shape[1]), np.float32),
        }
    )
    return batch


def warm_up(stage: Stage, batch: dict[str, Any], runs: int = 3) -> None:
    """Connect stores and run the stage a few times (TorchScript optimises on its first calls)."""
    stage.warmup()
    for _ in range(runs):
        stage.run({name: batch[name] for name in stage.inputs})

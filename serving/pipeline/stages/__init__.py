"""The pipeline's stages, one class per module, in pipeline order; each stage's Triton model is
``recommend_<name>``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.pipeline.stage import Stage
from serving.pipeline.stages.bloom_filter import BloomStage
from serving.pipeline.stages.context import ContextStage
from serving.pipeline.stages.item_features import ItemFeatureStage
from serving.pipeline.stages.query_tower import QueryTowerStage
from serving.pipeline.stages.ranker import RankerStage
from serving.pipeline.stages.request_filters import FilterStage
from serving.pipeline.stages.rerank import RerankStage
from serving.pipeline.stages.retrieval import RetrievalStage
from serving.pipeline.stages.user_features import UserFeatureStage

if TYPE_CHECKING:
    from serving.pipeline.config import StageConfig
    from serving.pipeline.export import ExportReader

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


def build_stage(name: str, config: StageConfig, export: ExportReader) -> Stage:
    try:
        cls = STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}") from None
    return cls.from_config(config, export)


#: Triton model name of a stage: ``recommend_<stage>``.
MODEL_PREFIX = "recommend_"


def stage_model_name(stage: str) -> str:
    return f"{MODEL_PREFIX}{stage}"


def stage_of_model(model_name: str) -> str | None:
    """The stage a per-stage model runs (``recommend_ranker`` -> ``ranker``); None for any other model (the
    fused pipeline)."""
    stage = model_name[len(MODEL_PREFIX) :] if model_name.startswith(MODEL_PREFIX) else None
    return stage if stage in STAGES else None

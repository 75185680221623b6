"""The pure-Python reference pipeline: the stages chained in one process, no Triton.

It feeds each stage the named tensors the ensemble would (one namespace of tensor names, as the ensemble's
identity input/output maps do), so the Triton ensemble's answer must equal this one's. The fused Triton layout
runs exactly this object (:class:`PipelineStage`). Also usable as a library: recommendations without a Triton
server, and per-stage costs without Triton's overhead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import close_catalog
from serving.pipeline.stage import Stage, Tensors
from serving.pipeline.stages import STAGES, build_stage
from serving.pipeline.warmup import warm_batch, warm_up
from streamrec.pipeline_client import (
    FLAGS,
    ITEM_IDS,
    ITEM_SCORES,
    MODEL_VERSION,
    PIPELINE_INPUTS,
    PIPELINE_OUTPUTS,
    RecommendRequest,
    RecommendResult,
    TensorSpec,
    decode_flags,
    request_arrays,
    timing_stage,
)


def results_from_tensors(out: Tensors, timings: bool) -> list[RecommendResult]:
    results = []
    for row in range(len(out[ITEM_IDS.name])):
        ids = [v.decode() for v in out[ITEM_IDS.name][row] if v]
        scores = [float(v) for v in out[ITEM_SCORES.name][row][: len(ids)]]
        version = out[MODEL_VERSION.name][row, 0]
        times = {}
        if timings:
            for name, value in out.items():
                stage = timing_stage(name)
                if stage is not None:
                    times[stage] = float(value[row, 0])
        results.append(
            RecommendResult(
                ids,
                scores,
                version.decode() if isinstance(version, bytes) else str(version),
                decode_flags(int(out[FLAGS.name][row, 0])),
                times,
                source="reference",
            )
        )
    return results


class ReferencePipeline:
    def __init__(self, config: StageConfig, export: ExportReader | None = None, warm: bool = True) -> None:
        self.config = config
        self.export = export or ExportReader(config.export_dir, config.device)
        self.stages: list[Stage] = [build_stage(name, config, self.export) for name in STAGES]
        if warm:
            batch = warm_batch(self.export, config.serving)
            for stage in self.stages:
                warm_up(stage, batch)

    @property
    def version(self) -> str:
        return self.export.version

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def run(self, tensors: Tensors) -> Tensors:
        space = dict(tensors)
        for stage in self.stages:
            space.update(stage.timed({name: space[name] for name in stage.input_names()}))
        return space

    def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[RecommendResult]:
        return results_from_tensors(self.run(request_arrays(requests)), any(r.timings for r in requests))

    def recommend(self, request: RecommendRequest) -> RecommendResult:
        return self.recommend_many([request])[0]

    def close(self) -> None:
        """Stop following the live catalog."""
        close_catalog(self.export)


def pipeline_answers() -> tuple[TensorSpec, ...]:
    """What the ensemble and the fused model answer: the results, then every stage's timing."""
    return (*PIPELINE_OUTPUTS, *(cls.timing() for cls in STAGES.values()))


class PipelineStage(Stage):
    """The whole pipeline as one stage: what the fused Triton model runs (request tensors in, results out)."""

    name = "pipeline"
    inputs = PIPELINE_INPUTS
    outputs = pipeline_answers()
    runs_models = True

    def __init__(self, pipeline: ReferencePipeline) -> None:
        self.pipeline = pipeline

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> PipelineStage:
        return cls(ReferencePipeline(config, export, warm=True))

    @classmethod
    def answers(cls) -> tuple[TensorSpec, ...]:
        return cls.outputs  # the stages' own timings, no timing of the whole

    def close(self) -> None:
        self.pipeline.close()

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        space = self.pipeline.run(dict(batch))
        return {spec.name: space[spec.name] for spec in self.outputs}

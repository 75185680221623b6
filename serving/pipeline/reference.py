"""The pure-Python reference pipeline: the ensemble's stages chained in one process, no Triton.

It feeds each stage the named tensors the ensemble would (one namespace of tensor names, as the ensemble's
identity input/output maps do), so the Triton ensemble's answer must equal this one's. Also usable as a
library: recommendations without a Triton server, and per-stage costs without Triton's overhead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.pipeline.base import Stage, Tensors
from serving.pipeline.export import ExportReader
from serving.pipeline.factory import STAGES, StageConfig, build_stage, warm_batch, warm_up
from streamrec.pipeline_client import (
    IN_DEVICE,
    IN_K,
    IN_OPTIONS,
    IN_TIMESTAMP_MS,
    IN_USER_ID,
    OUT_FLAGS,
    OUT_ITEM_IDS,
    OUT_ITEM_SCORES,
    OUT_MODEL_VERSION,
    TIMING_PREFIX,
    RecommendRequest,
    RecommendResult,
    decode_flags,
    now_ms,
)


def request_tensors(requests: Sequence[RecommendRequest]) -> Tensors:
    """The ensemble's input tensors for a batch of requests (what the gRPC client sends, batch dim first)."""
    return {
        IN_USER_ID: np.array([[(r.user_id or "").encode()] for r in requests], dtype=object),
        IN_DEVICE: np.array([[r.device.encode()] for r in requests], dtype=object),
        IN_TIMESTAMP_MS: np.array(
            [[r.timestamp_ms if r.timestamp_ms is not None else now_ms()] for r in requests], dtype=np.int64
        ),
        IN_K: np.array([[r.k] for r in requests], dtype=np.int32),
        IN_OPTIONS: np.array([[r.options.to_json().encode()] for r in requests], dtype=object),
    }


def results_from_tensors(out: Tensors, timings: bool) -> list[RecommendResult]:
    results = []
    for row in range(len(out[OUT_ITEM_IDS])):
        ids = [v.decode() for v in out[OUT_ITEM_IDS][row] if v]
        scores = [float(v) for v in out[OUT_ITEM_SCORES][row][: len(ids)]]
        version = out[OUT_MODEL_VERSION][row, 0]
        times = (
            {k[len(TIMING_PREFIX) :].lower(): float(v[row, 0]) for k, v in out.items() if k.startswith(TIMING_PREFIX)}
            if timings
            else {}
        )
        results.append(
            RecommendResult(
                ids,
                scores,
                version.decode() if isinstance(version, bytes) else str(version),
                decode_flags(int(out[OUT_FLAGS][row, 0])),
                times,
                source="reference",
            )
        )
    return results


#: The whole pipeline's inputs and outputs (the ensemble's, and the fused model's).
PIPELINE_INPUTS = (IN_USER_ID, IN_DEVICE, IN_TIMESTAMP_MS, IN_K, IN_OPTIONS)
PIPELINE_OUTPUTS = (OUT_ITEM_IDS, OUT_ITEM_SCORES, OUT_MODEL_VERSION, OUT_FLAGS)


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
            space.update(stage.timed({name: space[name] for name in stage.inputs}))
        return space

    def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[RecommendResult]:
        return results_from_tensors(self.run(request_tensors(requests)), any(r.timings for r in requests))

    def recommend(self, request: RecommendRequest) -> RecommendResult:
        return self.recommend_many([request])[0]


class PipelineStage(Stage):
    """The whole pipeline as one stage: what the fused Triton model runs (request tensors in, results out)."""

    name = "pipeline"
    inputs = PIPELINE_INPUTS
    outputs = PIPELINE_OUTPUTS

    def __init__(self, pipeline: ReferencePipeline) -> None:
        self.pipeline = pipeline

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        space = self.pipeline.run(dict(batch))
        return {k: v for k, v in space.items() if k in PIPELINE_OUTPUTS or k.startswith(TIMING_PREFIX)}

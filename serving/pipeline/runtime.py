"""The one Triton python-backend model every model of the repository runs (``serving/model_repository/model.py``
imports it): the stage comes from the model's name, its configuration from ``<version>/stage.json``.

``recommend_<stage>`` runs that stage (ensemble layout); any other name runs the whole pipeline in one process
(fused layout, served under the ensemble's name). ``execute`` concatenates the requests Triton hands over
(dynamic batching) along the batch dimension, runs the stage once and splits its outputs per request.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import numpy as np

from serving.pipeline.config import STAGE_CONFIG_FILE, StageConfig
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import close_catalog
from serving.pipeline.reference import PipelineStage
from serving.pipeline.stage import Stage
from serving.pipeline.stages import build_stage, stage_of_model
from serving.pipeline.warmup import warm_batch, warm_up


def stage_config_path(model_repository: str, model_name: str, version: str) -> Path:
    base = Path(model_repository)
    for candidate in (base / version / STAGE_CONFIG_FILE, base / model_name / version / STAGE_CONFIG_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{STAGE_CONFIG_FILE} not found for {model_name} version {version} under {base}")


def instance_device(args: dict[str, str]) -> str:
    if args.get("model_instance_kind", "CPU") == "GPU":
        return f"cuda:{args.get('model_instance_device_id', '0')}"
    return "cpu"


def load_stage(model_name: str, config: StageConfig, export: ExportReader | None = None) -> Stage:
    """The warmed-up stage a Triton model of this name runs."""
    export = export or ExportReader(config.export_dir, config.device)
    stage_name = stage_of_model(model_name)
    if stage_name is None:
        return PipelineStage.from_config(config, export)  # warms every stage itself
    stage = build_stage(stage_name, config, export)
    warm_up(stage, warm_batch(export, config.serving))
    return stage


def concat(parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    width = max(p.shape[1] if p.ndim > 1 else 0 for p in parts)
    if all(p.ndim > 1 and p.shape[1] == width for p in parts) or parts[0].ndim == 1:
        return np.concatenate(parts, axis=0)
    raise ValueError("requests of different shapes cannot share a batch")


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        model_config = json.loads(args["model_config"])
        path = stage_config_path(args["model_repository"], args["model_name"], args["model_version"])
        config = StageConfig.read(path).model_copy(update={"device": instance_device(args)})
        self.export = ExportReader(config.export_dir, config.device)
        self.stage: Stage = load_stage(args["model_name"], config, self.export)
        self.input_names = self.stage.input_names()
        gc.freeze()  # the loaded models and caches are long-lived: keep them out of the collector's full scans
        self.output_types = {
            out["name"]: pb_utils.triton_string_to_numpy(out["data_type"]) for out in model_config["output"]
        }

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        try:
            sizes: list[int] = []
            parts: dict[str, list[np.ndarray]] = {name: [] for name in self.input_names}
            for request in requests:
                for name in self.input_names:
                    parts[name].append(pb.get_input_tensor_by_name(request, name).as_numpy())
                sizes.append(len(parts[self.input_names[0]][-1]))
            outputs = self.stage.timed({name: concat(arrays) for name, arrays in parts.items()})
        except Exception as exc:
            error = pb.TritonError(f"{self.stage.name}: {type(exc).__name__}: {exc}")
            return [pb.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            tensors = []
            for name, dtype in self.output_types.items():
                value = outputs[name][start : start + size]
                tensors.append(pb.Tensor(name, value if dtype == np.object_ else value.astype(dtype, copy=False)))
            responses.append(pb.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self) -> None:
        self.stage.close()
        close_catalog(self.export)  # the live catalog's follower of a per-stage model
        self.stage = None  # type: ignore[assignment]

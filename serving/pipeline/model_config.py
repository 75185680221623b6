"""Triton model configs (``config.pbtxt``) built as Triton's own protobuf ``ModelConfig`` from the stages'
declared schemas, and read back the same way.

Instance kinds: stages that run models (``Stage.runs_models``: query tower, retrieval, ranker, and the fused
model that contains them) get ``KIND_GPU`` when ``ServingSettings.instance_kind`` is ``gpu``; the numpy stages
always run as ``KIND_CPU`` instances.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving.pipeline.reference import PipelineStage, pipeline_answers
from serving.pipeline.stage import Stage
from serving.pipeline.stages import STAGES, stage_model_name
from serving.settings import ServingSettings
from streamrec.pipeline_client import PIPELINE_INPUTS, TensorSpec

DATA_TYPES: dict[str, int] = {
    "BYTES": mc.TYPE_STRING,
    "INT32": mc.TYPE_INT32,
    "INT64": mc.TYPE_INT64,
    "FP32": mc.TYPE_FP32,
}
_WIRE_TYPES = {number: name for name, number in DATA_TYPES.items()}


def render(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse(text: str) -> mc.ModelConfig:
    """A config.pbtxt as Triton reads it; raises ``google.protobuf.text_format.ParseError`` if it is not one."""
    return text_format.Parse(text, mc.ModelConfig())


def declared(tensors: Sequence[mc.ModelInput] | Sequence[mc.ModelOutput]) -> tuple[TensorSpec, ...]:
    """The tensor specs a parsed config declares (inputs or outputs)."""
    return tuple(TensorSpec(t.name, _WIRE_TYPES[t.data_type], tuple(t.dims)) for t in tensors)


def instance_kind(stage: type[Stage], serving: ServingSettings) -> int:
    gpu = stage.runs_models and serving.instance_kind == "gpu"
    return int(mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU)


def python_model(name: str, stage: type[Stage], serving: ServingSettings, *, all_versions: bool) -> mc.ModelConfig:
    """A python-backend model running ``stage`` (see :mod:`serving.pipeline.runtime`)."""
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=serving.max_batch_size)
    config.input.extend(mc.ModelInput(name=t.name, data_type=DATA_TYPES[t.dtype], dims=t.dims) for t in stage.inputs)
    config.output.extend(
        mc.ModelOutput(name=t.name, data_type=DATA_TYPES[t.dtype], dims=t.dims) for t in stage.answers()
    )
    if all_versions:  # the ensemble pins one version (slot); a hot reload adds the next one beside it
        config.version_policy.all.SetInParent()
    else:  # the fused model: the newest slot serves once ready, then the previous one unloads
        config.version_policy.latest.num_versions = 1
    config.instance_group.add(count=serving.instance_count, kind=instance_kind(stage, serving))  # type: ignore[arg-type]
    if serving.max_batch_size > 1:
        # Every stage runs a whole batch at once (one torch call, one Feast read, one Redis round trip), so
        # under load Triton's dynamic batcher turns N stub round trips into one.
        config.dynamic_batching.max_queue_delay_microseconds = serving.batch_delay_us
        config.dynamic_batching.SetInParent()
    return config


def stage_model(stage: str, serving: ServingSettings) -> mc.ModelConfig:
    return python_model(stage_model_name(stage), STAGES[stage], serving, all_versions=True)


def fused_model(name: str, serving: ServingSettings) -> mc.ModelConfig:
    return python_model(name, PipelineStage, serving, all_versions=False)


def ensemble_model(name: str, slot: int, serving: ServingSettings) -> mc.ModelConfig:
    """The ensemble over every stage's model, pinned to ``slot``; tensors keep their names through the maps."""
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=serving.max_batch_size)
    config.input.extend(mc.ModelInput(name=t.name, data_type=DATA_TYPES[t.dtype], dims=t.dims) for t in PIPELINE_INPUTS)
    config.output.extend(
        mc.ModelOutput(name=t.name, data_type=DATA_TYPES[t.dtype], dims=t.dims) for t in pipeline_answers()
    )
    for stage, cls in STAGES.items():
        step = config.ensemble_scheduling.step.add(model_name=stage_model_name(stage), model_version=slot)
        step.input_map.update({t.name: t.name for t in cls.inputs})
        step.output_map.update({t.name: t.name for t in cls.answers()})
    config.parameters["slot"].string_value = str(slot)
    return config

"""config.pbtxt is rendered from the stages' declared schemas with Triton's protobuf ModelConfig: every
rendered config parses back as Triton reads it and declares exactly the stage's tensors and instance kind."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving.pipeline import model_config
from serving.pipeline.reference import PipelineStage
from serving.pipeline.stage import Stage
from serving.pipeline.stages import STAGES, stage_model_name, stage_of_model
from serving.settings import ServingSettings
from streamrec.pipeline_client import PIPELINE_INPUTS, PIPELINE_OUTPUTS, timing_tensor

GPU = ServingSettings(instance_kind="gpu", instance_count=2, max_batch_size=32, batch_delay_us=100)
KINDS = {mc.ModelInstanceGroup.KIND_CPU: "cpu", mc.ModelInstanceGroup.KIND_GPU: "gpu"}


def matches_schema(text: str, stage: type[Stage]) -> bool:
    config = model_config.parse(text)
    return (
        model_config.declared(config.input) == stage.inputs
        and model_config.declared(config.output) == (*stage.outputs, stage.timing())
        and config.backend == "python"
    )


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_config_parses_and_matches_the_declared_schema(name: str) -> None:
    stage = STAGES[name]
    text = model_config.render(model_config.stage_model(name, GPU))
    config = model_config.parse(text)
    assert config.name == stage_model_name(name) and stage_of_model(config.name) == name
    assert matches_schema(text, stage)
    assert config.max_batch_size == 32 and config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.version_policy.HasField("all")
    (group,) = config.instance_group
    assert group.count == 2
    assert KINDS[group.kind] == ("gpu" if name in {"query_tower", "retrieval", "ranker"} else "cpu")


@pytest.mark.parametrize("name", list(STAGES))
def test_a_schema_change_is_seen_in_the_rendered_config(name: str) -> None:
    """Negative case: a config rendered from a stage whose first input has another type or shape does not
    match the declared schema, and a config with an unknown data type does not parse at all."""
    stage = STAGES[name]
    first = stage.inputs[0]
    for changed in (
        dataclasses.replace(first, dtype="FP32" if first.dtype != "FP32" else "INT64"),
        dataclasses.replace(first, dims=(*first.dims, 7)),
    ):
        altered = type(f"Altered{stage.__name__}", (stage,), {"inputs": (changed, *stage.inputs[1:])})
        text = model_config.render(model_config.python_model(stage_model_name(name), altered, GPU, all_versions=True))
        assert matches_schema(text, altered) and not matches_schema(text, stage)
    text = model_config.render(model_config.stage_model(name, GPU))
    with pytest.raises(text_format.ParseError):
        model_config.parse(text.replace("TYPE_", "TYPE_NO_SUCH_", 1))


def test_cpu_setting_puts_every_stage_on_cpu_and_one_instance() -> None:
    for name in STAGES:
        (group,) = model_config.parse(
            model_config.render(model_config.stage_model(name, ServingSettings()))
        ).instance_group
        assert group.kind == mc.ModelInstanceGroup.KIND_CPU and group.count == 1


def test_fused_and_ensemble_configs_declare_the_client_contract() -> None:
    timings = tuple(timing_tensor(name) for name in STAGES)
    fused = model_config.parse(model_config.render(model_config.fused_model("recommend", GPU)))
    assert model_config.declared(fused.input) == PIPELINE_INPUTS == PipelineStage.inputs
    assert model_config.declared(fused.output) == (*PIPELINE_OUTPUTS, *timings)
    assert fused.version_policy.latest.num_versions == 1
    assert fused.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU

    ensemble = model_config.parse(model_config.render(model_config.ensemble_model("recommend", 4, GPU)))
    assert ensemble.platform == "ensemble" and ensemble.parameters["slot"].string_value == "4"
    assert model_config.declared(ensemble.input) == PIPELINE_INPUTS
    assert model_config.declared(ensemble.output) == (*PIPELINE_OUTPUTS, *timings)
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [stage_model_name(n) for n in STAGES]
    assert all(s.model_version == 4 for s in steps)
    produced = {t.name for t in PIPELINE_INPUTS}
    for step, stage in zip(steps, STAGES.values(), strict=True):
        # Every step reads tensors the pipeline's inputs or an earlier step produced, under their own names.
        assert dict(step.input_map) == {t.name: t.name for t in stage.inputs}
        assert set(step.input_map) <= produced, stage.name
        produced |= set(step.output_map)
    assert {t.name for t in (*PIPELINE_OUTPUTS, *timings)} <= produced


def test_serving_pipeline_modules_import_no_cycle() -> None:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("serving")
    modules = sorted(m for m in graph.modules if m.startswith("serving.pipeline"))
    cycles = [
        (a, b)
        for i, a in enumerate(modules)
        for b in modules[i + 1 :]
        if graph.find_shortest_chain(a, b) and graph.find_shortest_chain(b, a)
    ]
    assert cycles == []


def test_the_generic_model_takes_its_stage_from_the_model_name() -> None:
    assert [stage_of_model(stage_model_name(name)) for name in STAGES] == list(STAGES)
    # The pipeline's own name (the fused model) and names of no stage run the whole pipeline.
    assert stage_of_model("recommend") is None
    assert stage_of_model("recommend_no_such_stage") is None
    assert stage_of_model("ranker") is None

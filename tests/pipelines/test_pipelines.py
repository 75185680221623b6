"""The Kubeflow pipelines compile to IR YAML with the expected steps, parameters, order, image and volumes;
every step's command is one the trainer image's CLI accepts. The steps of our own are tested on real files."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamrec.cli.main import build_parser, core_registry
from streamrec.cli.plugins import load_plugins
from trainer.pipelines import steps

REPO = Path(__file__).resolve().parents[2]
IMAGE = "registry.example/streamrec-trainer:test"
PIPELINES_PYTHON = Path(os.environ.get("STREAMREC_PIPELINES_PYTHON") or REPO / ".venv-pipelines" / "bin" / "python")


def compile_pipelines(out: Path, *args: str) -> dict[str, list[dict[str, Any]]]:
    if not PIPELINES_PYTHON.is_file():
        pytest.skip(f"kfp SDK venv missing ({PIPELINES_PYTHON}): run `make pipelines`")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [str(PIPELINES_PYTHON), "-m", "trainer.pipelines.compile", "--out", str(out), "--image", IMAGE, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {p.stem: list(yaml.safe_load_all(p.read_text())) for p in sorted(out.glob("*.yaml"))}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return compile_pipelines(tmp_path_factory.mktemp("kfp"))


def tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return spec["root"]["dag"]["tasks"]


def task_values(spec: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The values a task's inputs get in a run with the pipeline defaults (run id: a sample), rendered as the
    KFP launcher renders them (the IR keeps every number as a double)."""
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    types = spec["components"][task["componentRef"]["name"]]["inputDefinitions"]["parameters"]
    values = {}
    for name, binding in task["inputs"]["parameters"].items():
        if "componentInputParameter" in binding:
            value = defaults[binding["componentInputParameter"]]
        else:
            value = binding["runtimeValue"]["constant"]
            value = "run-1" if value == "{{$.pipeline_job_uuid}}" else value
        values[name] = int(value) if types[name]["parameterType"] == "NUMBER_INTEGER" else value
    return values


def executor_argvs(spec: dict[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    """Per task: (command, args) with every placeholder resolved."""
    out = {}
    for name, task in tasks(spec).items():
        values = task_values(spec, task)
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        container = spec["deploymentSpec"]["executors"][label]["container"]

        def param(text: str, values: dict[str, Any] = values) -> str:
            return re.sub(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}", lambda m: str(values[m.group(1)]), text)

        def resolve(arg: str) -> str:
            if arg.startswith('{"Concat"'):
                return "".join(param(part) for part in json.loads(arg)["Concat"])
            return param(arg)

        out[name] = (container["command"], [resolve(a) for a in container.get("args", [])])
    return out


def test_both_pipelines_compile_with_their_steps_in_order(compiled: dict[str, list[dict[str, Any]]]) -> None:
    assert set(compiled) == {"full-training", "fine-tune"}
    full, fine = compiled["full-training"][0], compiled["fine-tune"][0]
    assert full["pipelineInfo"]["name"] == "full-training" and fine["pipelineInfo"]["name"] == "fine-tune"
    order = {name: sorted(t.get("dependentTasks", [])) for name, t in tasks(full).items()}
    assert order == {
        "snapshot": [],
        "train-full": ["snapshot"],
        "evaluate": ["snapshot"],
        "guardrail": ["evaluate"],
        "publish": ["guardrail", "train-full"],
        "report-success": ["publish"],
    }
    assert {n: sorted(t.get("dependentTasks", [])) for n, t in tasks(fine).items()} == {
        "snapshot": [],
        "finetune": ["snapshot"],
        "report-success": ["finetune"],
    }


def test_parameters_and_their_defaults(compiled: dict[str, list[dict[str, Any]]]) -> None:
    params = compiled["full-training"][0]["root"]["inputDefinitions"]["parameters"]
    assert {k: v["parameterType"] for k, v in params.items()} == {
        "archive_root": "STRING", "work_root": "STRING", "staging_root": "STRING", "export_root": "STRING",
        "device": "STRING", "eval_max_users": "NUMBER_INTEGER", "guardrail_metric": "STRING",
        "guardrail_min_value": "NUMBER_DOUBLE", "guardrail_min_lift": "NUMBER_DOUBLE", "pushgateway_url": "STRING",
    }  # fmt: skip
    assert params["export_root"]["defaultValue"] == "/models/exports"
    assert params["archive_root"]["defaultValue"] == "/data/archive"
    fine = compiled["fine-tune"][0]["root"]["inputDefinitions"]["parameters"]
    assert set(fine) == {"archive_root", "work_root", "export_root", "device", "pushgateway_url"}


def test_every_step_runs_the_trainer_image_on_both_volumes(compiled: dict[str, list[dict[str, Any]]]) -> None:
    for spec, platform in compiled.values():
        executors = spec["deploymentSpec"]["executors"]
        assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
        mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for name in executors:
            if name == "exec-report-success":
                continue  # talks to the Pushgateway only
            assert {m["mountPath"]: m["constant"] for m in mounts[name]["pvcMount"]} == {
                "/data": "streamrec-data",
                "/models": "streamrec-models",
            }


def test_every_command_is_accepted_by_the_cli_it_runs(compiled: dict[str, list[dict[str, Any]]]) -> None:
    registry = core_registry()
    assert not load_plugins(registry)
    cli = build_parser(registry)
    seen = []
    for spec, _ in compiled.values():
        for name, (command, args) in executor_argvs(spec).items():
            if command[0] == "streamrec":
                argv = command[1:] + args
                cli.parse_args(argv)  # exits (SystemExit) on anything the CLI does not accept
                seen.append(" ".join(argv[:2]))
            else:
                assert command == ["python3", "-m", "trainer.pipelines.steps", command[3]], name
                parsed = steps.build_parser().parse_args(command[3:] + args)
                seen.append(f"steps {parsed.step}")
    assert sorted(set(seen)) == sorted(
        {"train full", "train finetune", "eval --data", "report-success --pipeline"}
        | {"steps snapshot", "steps guardrail", "steps publish"}
    )


def test_snapshot_of_the_full_run_is_what_train_and_eval_read(compiled: dict[str, list[dict[str, Any]]]) -> None:
    argvs = executor_argvs(compiled["full-training"][0])

    def arg(task: str, flag: str) -> str:
        args = argvs[task][1]
        return args[args.index(flag) + 1]

    assert (
        arg("snapshot", "--dest") == "/data/runs/run-1/data" == arg("train-full", "--data") == arg("evaluate", "--data")
    )
    assert arg("guardrail", "--metrics") == arg("evaluate", "--out") + "/metrics.json"
    assert arg("publish", "--staging") == arg("train-full", "--export-root") == "/models/staging/run-1"
    assert arg("report-success", "--pipeline") == "full-training"
    assert executor_argvs(compiled["fine-tune"][0])["report-success"][1][1] == "fine-tune"


def test_gpu_variant_asks_for_gpus_on_the_training_steps_only(tmp_path: Path) -> None:
    compiled = compile_pipelines(tmp_path, "--gpus", "1")
    for spec, _ in compiled.values():
        for name, executor in spec["deploymentSpec"]["executors"].items():
            accelerator = executor["container"].get("resources", {}).get("accelerator")
            if name in {"exec-train-full", "exec-evaluate", "exec-finetune"}:
                assert accelerator and accelerator.get("resourceType", accelerator.get("type")) == "nvidia.com/gpu"
            else:
                assert accelerator is None, name


# -- the steps of our own ---------------------------------------------------------------------------------


def test_snapshot_hard_links_files_skips_temporaries_and_refuses_a_used_destination(tmp_path: Path) -> None:
    source = tmp_path / "archive"
    (source / "interactions" / "date=2026-11-30").mkdir(parents=True)
    done = source / "interactions" / "date=2026-11-30" / "a.parquet"
    done.write_bytes(b"parquet")
    (source / "interactions" / "date=2026-11-30" / ".b.parquet.1.tmp").write_bytes(b"half")
    (source / "items.parquet").write_bytes(b"items")
    dest = tmp_path / "runs" / "r1" / "data"
    assert steps.snapshot(source, dest) == 2
    copy = dest / "interactions" / "date=2026-11-30" / "a.parquet"
    assert copy.read_bytes() == b"parquet" and copy.stat().st_ino == done.stat().st_ino
    assert not (dest / "interactions" / "date=2026-11-30" / ".b.parquet.1.tmp").exists()
    with pytest.raises(steps.StepError, match="not empty"):
        steps.snapshot(source, dest)
    with pytest.raises(steps.StepError, match="no data root"):
        steps.snapshot(tmp_path / "missing", tmp_path / "other")


def write_metrics(path: Path, pipeline: float, popularity: float) -> Path:
    results = {steps.CANDIDATE: {"recall@10": pipeline}, steps.BASELINE: {"recall@10": popularity}}
    path.write_text(json.dumps({"context": {}, "results": results}))
    return path


@pytest.mark.parametrize(
    ("pipeline", "popularity", "min_value", "min_lift", "passes"),
    [
        (0.20, 0.10, 0.0, 0.0, True),
        (0.20, 0.10, 0.0, 0.5, True),
        (0.20, 0.10, 0.0, 1.5, False),  # must be 2.5x popularity
        (0.09, 0.10, 0.0, 0.0, False),  # worse than popularity
        (0.20, 0.10, 0.25, 0.0, False),  # below the floor
    ],
)
def test_guardrail_needs_the_floor_and_a_lift_over_popularity(
    tmp_path: Path, pipeline: float, popularity: float, min_value: float, min_lift: float, passes: bool
) -> None:
    metrics = write_metrics(tmp_path / "metrics.json", pipeline, popularity)
    if passes:
        assert steps.guardrail(metrics, "recall@10", min_value, min_lift).startswith("guardrail passed")
    else:
        with pytest.raises(steps.StepError):
            steps.guardrail(metrics, "recall@10", min_value, min_lift)


def test_steps_refuse_with_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = write_metrics(tmp_path / "metrics.json", 0.05, 0.10)
    assert steps.main(["guardrail", "--metrics", str(metrics)]) == 2
    assert steps.main(["guardrail", "--metrics", str(metrics), "--metric", "ndcg@10"]) == 2
    assert steps.main(["publish", "--staging", str(tmp_path / "none"), "--export-root", str(tmp_path / "e")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert lines[0] == "guardrail: recall@10 0.0500 does not beat popularity 0.1000 by +0.0%"
    assert lines[1].startswith("guardrail: ") and "ndcg@10" in lines[1]
    assert lines[2].startswith("publish: ")

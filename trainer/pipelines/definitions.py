"""The trainer's Kubeflow pipelines (KFP v2), built for one trainer image.

Full training: snapshot -> (train | evaluate) -> guardrail -> publish -> report. The candidate is trained into a
staging export root of its own; it reaches the live export root (and so Triton) only once the evaluation of the
same snapshot beats the popularity baseline. Daily fine-tune: snapshot -> ``streamrec train finetune`` (which
promotes only a candidate not worse than production on a hold-out) -> report. The last step of both pushes the
success time that the dashboard shows and the StreamrecFineTuneMissing alert watches.

Every step runs the trainer image with the ``streamrec`` CLI (or ``python -m trainer.pipelines.steps``) on the
data and models volumes of the deployment (k8s/base/storage).
"""

# No `from __future__ import annotations`: kfp reads the components' parameter types from live annotations.
from dataclasses import dataclass
from typing import Any

from kfp import dsl, kubernetes

DEFAULT_IMAGE = "ghcr.io/streamrec/streamrec-trainer:0.1.0"
DATA_PVC, DATA_MOUNT = "streamrec-data", "/data"
MODELS_PVC, MODELS_MOUNT = "streamrec-models", "/models"
RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER
FULL_TRAINING, FINE_TUNE = "full-training", "fine-tune"


@dataclass(frozen=True)
class Resources:
    cpu: str = "2"
    memory: str = "8Gi"
    memory_limit: str = "16Gi"
    gpus: int = 0


def _run_dir(work_root: Any, run_id: Any, leaf: str) -> dsl.ConcatPlaceholder:
    return dsl.ConcatPlaceholder([work_root, "/", run_id, "/", leaf])


def components(image: str) -> dict[str, Any]:
    """The container components, bound to one image."""

    @dsl.container_component
    def snapshot(archive_root: str, work_root: str, run_id: str) -> dsl.ContainerSpec:
        """Freeze the archive for this run (hard links)."""
        return dsl.ContainerSpec(
            image=image,
            command=["python3", "-m", "trainer.pipelines.steps", "snapshot"],
            args=["--source", archive_root, "--dest", _run_dir(work_root, run_id, "data")],
        )

    @dsl.container_component
    def train_full(work_root: str, staging_root: str, run_id: str, device: str) -> dsl.ContainerSpec:
        """Train both models on the snapshot; export into this run's staging root."""
        return dsl.ContainerSpec(
            image=image,
            command=["streamrec", "train", "full"],
            args=[
                "--data", _run_dir(work_root, run_id, "data"),
                "--export-root", dsl.ConcatPlaceholder([staging_root, "/", run_id]),
                "--device", device, "--no-resume", "--no-progress",
            ],
        )  # fmt: skip

    @dsl.container_component
    def evaluate(work_root: str, run_id: str, device: str, max_users: int) -> dsl.ContainerSpec:
        """Offline evaluation of the pipeline and its baselines on the snapshot's temporal split."""
        return dsl.ContainerSpec(
            image=image,
            command=["streamrec", "eval"],
            args=[
                "--data", _run_dir(work_root, run_id, "data"),
                "--out", _run_dir(work_root, run_id, "report"),
                "--max-users", max_users, "--device", device, "--no-progress",
            ],
        )  # fmt: skip

    @dsl.container_component
    def guardrail(work_root: str, run_id: str, metric: str, min_value: float, min_lift: float) -> dsl.ContainerSpec:
        """Fail the run unless the evaluated pipeline reaches the floor and beats popularity."""
        return dsl.ContainerSpec(
            image=image,
            command=["python3", "-m", "trainer.pipelines.steps", "guardrail"],
            args=[
                "--metrics", _run_dir(work_root, run_id, "report/metrics.json"),
                "--metric", metric, "--min-value", min_value, "--min-lift", min_lift,
            ],
        )  # fmt: skip

    @dsl.container_component
    def publish(staging_root: str, export_root: str, run_id: str) -> dsl.ContainerSpec:
        """Move the staged version into the live export root and make it CURRENT (Triton loads it)."""
        return dsl.ContainerSpec(
            image=image,
            command=["python3", "-m", "trainer.pipelines.steps", "publish"],
            args=["--staging", dsl.ConcatPlaceholder([staging_root, "/", run_id]), "--export-root", export_root],
        )

    @dsl.container_component
    def finetune(work_root: str, export_root: str, run_id: str, device: str) -> dsl.ContainerSpec:
        """Fine-tune production on the newest archived day; promoted only if not worse on the hold-out."""
        return dsl.ContainerSpec(
            image=image,
            command=["streamrec", "train", "finetune"],
            args=[
                "--data", _run_dir(work_root, run_id, "data"),
                "--export-root", export_root, "--device", device, "--no-progress",
            ],
        )  # fmt: skip

    @dsl.container_component
    def report_success(pipeline: str, pushgateway_url: str) -> dsl.ContainerSpec:
        """Push the success time to the Pushgateway (streamrec_training_last_success_timestamp_seconds)."""
        return dsl.ContainerSpec(
            image=image,
            command=["streamrec", "report-success"],
            args=["--pipeline", pipeline, "--gateway", pushgateway_url],
        )

    return {
        "snapshot": snapshot,
        "train_full": train_full,
        "evaluate": evaluate,
        "guardrail": guardrail,
        "publish": publish,
        "finetune": finetune,
        "report_success": report_success,
    }


def _on_volumes(task: dsl.PipelineTask, resources: Resources | None = None) -> dsl.PipelineTask:
    kubernetes.mount_pvc(task, pvc_name=DATA_PVC, mount_path=DATA_MOUNT)
    kubernetes.mount_pvc(task, pvc_name=MODELS_PVC, mount_path=MODELS_MOUNT)
    task.set_caching_options(False)  # every run reads a new snapshot: nothing to reuse
    if resources is not None:
        task.set_cpu_request(resources.cpu).set_memory_request(resources.memory)
        task.set_memory_limit(resources.memory_limit)
        if resources.gpus:
            task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(resources.gpus)
            kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    return task


def build(image: str = DEFAULT_IMAGE, gpus: int = 0) -> dict[str, Any]:
    """Both pipelines for ``image``; ``gpus`` per training task (0: CPU)."""
    c = components(image)
    heavy = Resources(gpus=gpus)

    @dsl.pipeline(name=FULL_TRAINING, description="Snapshot, train, evaluate, guardrail, publish.")
    def full_training(
        archive_root: str = f"{DATA_MOUNT}/archive",
        work_root: str = f"{DATA_MOUNT}/runs",
        staging_root: str = f"{MODELS_MOUNT}/staging",
        export_root: str = f"{MODELS_MOUNT}/exports",
        device: str = "auto",
        eval_max_users: int = 5000,
        guardrail_metric: str = "recall@10",
        guardrail_min_value: float = 0.0,
        guardrail_min_lift: float = 0.0,
        pushgateway_url: str = "http://prometheus-pushgateway.monitoring.svc:9091",
    ) -> None:
        snap = _on_volumes(c["snapshot"](archive_root=archive_root, work_root=work_root, run_id=RUN_ID))
        snap.set_display_name("snapshot")
        train = _on_volumes(
            c["train_full"](work_root=work_root, staging_root=staging_root, run_id=RUN_ID, device=device), heavy
        ).after(snap)
        train.set_display_name("train")
        evaluation = _on_volumes(
            c["evaluate"](work_root=work_root, run_id=RUN_ID, device=device, max_users=eval_max_users), heavy
        ).after(snap)
        evaluation.set_display_name("evaluate")
        guard = _on_volumes(
            c["guardrail"](
                work_root=work_root,
                run_id=RUN_ID,
                metric=guardrail_metric,
                min_value=guardrail_min_value,
                min_lift=guardrail_min_lift,
            )
        ).after(evaluation)
        guard.set_display_name("guardrail")
        published = _on_volumes(c["publish"](staging_root=staging_root, export_root=export_root, run_id=RUN_ID)).after(
            train, guard
        )
        published.set_display_name("publish")
        report = c["report_success"](pipeline=FULL_TRAINING, pushgateway_url=pushgateway_url).after(published)
        report.set_caching_options(False)
        report.set_display_name("report success")

    @dsl.pipeline(name=FINE_TUNE, description="Daily fine-tune on the newest archived day; promoted if not worse.")
    def fine_tune(
        archive_root: str = f"{DATA_MOUNT}/archive",
        work_root: str = f"{DATA_MOUNT}/runs",
        export_root: str = f"{MODELS_MOUNT}/exports",
        device: str = "auto",
        pushgateway_url: str = "http://prometheus-pushgateway.monitoring.svc:9091",
    ) -> None:
        snap = _on_volumes(c["snapshot"](archive_root=archive_root, work_root=work_root, run_id=RUN_ID))
        snap.set_display_name("snapshot")
        tuned = _on_volumes(
            c["finetune"](work_root=work_root, export_root=export_root, run_id=RUN_ID, device=device), heavy
        ).after(snap)
        tuned.set_display_name("fine-tune")
        report = c["report_success"](pipeline=FINE_TUNE, pushgateway_url=pushgateway_url).after(tuned)
        report.set_caching_options(False)
        report.set_display_name("report success")

    return {FULL_TRAINING: full_training, FINE_TUNE: fine_tune}

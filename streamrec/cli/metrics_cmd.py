"""``streamrec report-success``: a batch job's last success, pushed to a Prometheus Pushgateway.

Training runs as Kubeflow pipelines, which no Prometheus scrapes; their last step calls this command so that
``streamrec_training_last_success_timestamp_seconds{pipeline=...}`` feeds the dashboard and the alert that a
daily fine-tune is missing.
"""

from __future__ import annotations

import argparse
import time
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.errors import ConfigError, StreamrecError
from streamrec.settings import ComponentSettings

LAST_SUCCESS_METRIC = "streamrec_training_last_success_timestamp_seconds"
PUSH_JOB = "streamrec-training"


class MonitoringSettings(ComponentSettings):
    """Where batch jobs report to (env prefix ``STREAMREC_MONITORING_``)."""

    section: ClassVar[str] = "monitoring"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_MONITORING_")

    pushgateway_url: str | None = Field(
        None, description="Prometheus Pushgateway (http://host:9091) batch jobs push their last success to."
    )
    push_timeout_s: float = Field(10.0, gt=0, description="Timeout of one push.")


def push_last_success(gateway: str, pipeline: str, timeout_s: float, now: float | None = None) -> None:
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    gauge = Gauge(LAST_SUCCESS_METRIC, "Unix time a training pipeline last succeeded.", registry=registry)
    gauge.set(time.time() if now is None else now)
    try:
        push_to_gateway(
            gateway, job=PUSH_JOB, registry=registry, grouping_key={"pipeline": pipeline}, timeout=timeout_s
        )
    except OSError as exc:
        raise StreamrecError(f"push to {gateway} failed: {exc}") from None


def register(registry: PluginRegistry) -> None:
    registry.add_settings(MonitoringSettings)

    def setup(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument("--pipeline", required=True, help="pipeline name (label), e.g. fine-tune")
        parser.add_argument("--gateway", help="Pushgateway URL (default: STREAMREC_MONITORING_PUSHGATEWAY_URL)")

        def run(args: argparse.Namespace) -> int:
            settings = MonitoringSettings.load()
            gateway = args.gateway or settings.pushgateway_url
            if not gateway:
                raise ConfigError("no Pushgateway to report to", source="STREAMREC_MONITORING_PUSHGATEWAY_URL")
            push_last_success(gateway, args.pipeline, settings.push_timeout_s)
            print(f"reported the success of {args.pipeline} to {gateway}")
            return 0

        return run

    registry.add_command("report-success", "push a pipeline's last success time to the Pushgateway", setup)

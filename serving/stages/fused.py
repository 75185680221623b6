"""Triton python-backend model of the fused layout: every stage in one process (see :mod:`serving.repository`)."""

from serving.pipeline.base import Stage
from serving.pipeline.export import ExportReader
from serving.pipeline.factory import StageConfig
from serving.pipeline.reference import PipelineStage, ReferencePipeline
from serving.stages.base import TritonStageModel


class TritonPythonModel(TritonStageModel):
    stage_name = "pipeline"

    def build(self, config: StageConfig, export: ExportReader) -> Stage:
        return PipelineStage(ReferencePipeline(config, export, warm=True))

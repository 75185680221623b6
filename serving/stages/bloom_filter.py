"""Triton python-backend model of the ``bloom_filter`` stage (see :mod:`serving.stages.base`)."""

from serving.stages.base import TritonStageModel


class TritonPythonModel(TritonStageModel):
    stage_name = "bloom_filter"

"""Triton python-backend model of the ``ranker`` stage (see :mod:`serving.stages.base`)."""

from serving.stages.base import TritonStageModel


class TritonPythonModel(TritonStageModel):
    stage_name = "ranker"

"""Triton python-backend model of the ``rerank`` stage (see :mod:`serving.stages.base`)."""

from serving.stages.base import TritonStageModel


class TritonPythonModel(TritonStageModel):
    stage_name = "rerank"

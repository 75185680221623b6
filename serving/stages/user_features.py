"""Triton python-backend model of the ``user_features`` stage (see :mod:`serving.stages.base`)."""

from serving.stages.base import TritonStageModel


class TritonPythonModel(TritonStageModel):
    stage_name = "user_features"

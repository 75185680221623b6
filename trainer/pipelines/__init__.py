"""Kubeflow Pipelines (v2) of the trainer: full training and the daily fine-tune.

``definitions`` builds the pipelines with the ``kfp`` SDK (installed apart: ``make pipelines``); ``steps`` holds the
steps that are not ``streamrec train``/``eval`` commands (snapshot, guardrail, publish), run inside the trainer
image as ``python -m trainer.pipelines.steps``.
"""

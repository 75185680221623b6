"""The recommendation pipeline: its stages (one class per module under ``stages/``), the tensor contract, the
reference pipeline, and the Triton runtime and model configs derived from the stages' declared schemas."""

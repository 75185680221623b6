"""What every stage is: an operator with a declared schema (named, typed tensors in and out, batch dimension
first as Triton hands them) and a ``run`` over one batch of numpy arrays. The Triton runtime
(:mod:`serving.pipeline.runtime`), the config renderer (:mod:`serving.pipeline.model_config`) and the reference
pipeline only use this interface.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from streamrec.pipeline_client import RecommendOptions, TensorSpec, timing_tensor

if TYPE_CHECKING:
    from serving.pipeline.config import StageConfig
    from serving.pipeline.export import ExportReader

Tensors = dict[str, np.ndarray]


class Stage:
    """One step of the pipeline. Subclasses set ``name``, ``inputs``, ``outputs`` and implement
    :meth:`from_config` and :meth:`run`; ``runs_models`` marks the stages that may run on a GPU instance."""

    name: ClassVar[str] = "stage"
    inputs: ClassVar[tuple[TensorSpec, ...]] = ()
    outputs: ClassVar[tuple[TensorSpec, ...]] = ()
    runs_models: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> Stage:
        """The stage for one export version, loading only the export parts it uses."""
        raise NotImplementedError

    @classmethod
    def timing(cls) -> TensorSpec:
        return timing_tensor(cls.name)

    @classmethod
    def answers(cls) -> tuple[TensorSpec, ...]:
        """What the stage's Triton model answers: its outputs, then its timing."""
        return (*cls.outputs, cls.timing())

    @classmethod
    def input_names(cls) -> tuple[str, ...]:
        return tuple(spec.name for spec in cls.inputs)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        raise NotImplementedError

    def warmup(self) -> None:
        """Pay one-time costs (imports, connections, first TorchScript call) before the first request."""

    def close(self) -> None:
        """Release what the stage started (the fused pipeline: the live catalog's follower)."""

    def timed(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        """Run and add the stage's timing tensor (FP32 [B, 1]): its own time in milliseconds."""
        start = time.perf_counter()
        out = self.run(batch)
        elapsed = (time.perf_counter() - start) * 1000.0
        rows = len(next(iter(batch.values()))) if batch else 1
        out[self.timing().name] = np.full((rows, 1), elapsed, dtype=np.float32)
        return out


class TorchModelStage(Stage):
    """A stage around one exported TorchScript model whose ``forward`` takes one ``Dict[str, Tensor]`` keyed by
    :mod:`streamrec.features`' ``MODEL_*`` names."""

    runs_models = True

    def __init__(self, model: Any, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        self._lock = threading.Lock()  # TorchScript modules are not re-entrant across threads on every backend

    def tensor(self, array: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True)

    def call_model(self, features: dict[str, Any]) -> Any:
        with self._lock, self.torch.inference_mode():
            return self.model(features)


def set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def text_column(array: np.ndarray) -> list[str]:
    """BYTES [B, 1] (object array of bytes or str) -> list of B strings."""
    return [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(len(array), -1)[:, 0]
    ]


def int_column(array: np.ndarray) -> np.ndarray:
    """[B, 1] -> int64 [B]."""
    return np.asarray(array).reshape(len(array), -1)[:, 0].astype(np.int64)


def flag_column(rows: int) -> np.ndarray:
    return np.zeros((rows, 1), dtype=np.int32)


def options_column(array: np.ndarray) -> list[RecommendOptions]:
    """OPTIONS BYTES [B, 1] -> one RecommendOptions per row (malformed JSON: defaults, never an exception)."""
    out = []
    for raw in text_column(array):
        try:
            out.append(RecommendOptions.from_json(raw))
        except ValueError:
            out.append(RecommendOptions())
    return out

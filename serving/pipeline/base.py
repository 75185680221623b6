"""What every stage is: named numpy tensors in (batch dimension first, as Triton hands them), named tensors out."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

Tensors = dict[str, np.ndarray]


class Stage:
    """One step of the pipeline. Subclasses set ``name``, ``inputs``, ``outputs`` and implement :meth:`run`."""

    name: ClassVar[str] = "stage"
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()

    @property
    def timing_output(self) -> str:
        return f"MS_{self.name.upper()}"

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        raise NotImplementedError

    def warmup(self) -> None:
        """Pay one-time costs (imports, connections, first TorchScript call) before the first request."""

    def timed(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        """Run and add ``MS_<NAME>`` (FP32 [B, 1]): this stage's own time in milliseconds."""
        start = time.perf_counter()
        out = self.run(batch)
        elapsed = (time.perf_counter() - start) * 1000.0
        rows = len(next(iter(batch.values()))) if batch else 1
        out[self.timing_output] = np.full((rows, 1), elapsed, dtype=np.float32)
        return out


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

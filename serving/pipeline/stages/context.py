"""Context indices (device, hour, weekday) and the user's id and profile indices."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import CONTEXT_FLAGS, CONTEXT_IDX, PROFILE_IDX, USER_IDX
from serving.pipeline.export import ExportReader
from serving.pipeline.stage import Stage, Tensors, flag_column, int_column, text_column
from streamrec.features import context_indices
from streamrec.pipeline_client import DEVICE, FLAG_BITS, TIMESTAMP_MS, UNKNOWN_USER, USER_ID


class ContextStage(Stage):
    """Anonymous and unknown users get index 0 and a zero profile, exactly as training masks them; an unknown
    user is flagged."""

    name = "context"
    inputs = (USER_ID, DEVICE, TIMESTAMP_MS)
    outputs = (USER_IDX, PROFILE_IDX, CONTEXT_IDX, CONTEXT_FLAGS)

    def __init__(self, user_index: Mapping[str, int], profiles: np.ndarray) -> None:
        self.user_index = user_index
        self.profiles = profiles  # [n_users + 1, P], row 0 zeros

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> ContextStage:
        return cls(export.user_index, export.profiles)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        users = text_column(batch[USER_ID.name])
        devices = text_column(batch[DEVICE.name])
        stamps = int_column(batch[TIMESTAMP_MS.name])
        user_idx = np.array([self.user_index.get(u, 0) if u else 0 for u in users], dtype=np.int64)
        flags = flag_column(len(users))
        flags[[bool(u) and i == 0 for u, i in zip(users, user_idx, strict=True)], 0] |= FLAG_BITS[UNKNOWN_USER]
        context = np.array([context_indices(d, int(t)) for d, t in zip(devices, stamps, strict=True)], np.int64)
        return {
            USER_IDX.name: user_idx.reshape(-1, 1),
            PROFILE_IDX.name: self.profiles[user_idx],
            CONTEXT_IDX.name: context.reshape(-1, 3),
            CONTEXT_FLAGS.name: flags,
        }

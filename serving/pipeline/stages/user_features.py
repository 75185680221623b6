"""The user's stream features from Feast: recent items (as item indices) and raw count features."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import FEATURE_FLAGS, RECENT_ITEMS, USER_DENSE
from serving.pipeline.export import ExportReader
from serving.pipeline.stage import Stage, Tensors, flag_column, text_column
from serving.pipeline.stores import FeastUserFeatures
from streamrec import artifacts as art
from streamrec.errors import StoreUnavailableError
from streamrec.pipeline_client import FEATURES_UNAVAILABLE, FLAG_BITS, USER_ID


class UserFeatureStage(Stage):
    """ONE Feast online read per batch. Store down or switched off: zeros, and the request is flagged."""

    name = "user_features"
    inputs = (USER_ID,)
    outputs = (RECENT_ITEMS, USER_DENSE, FEATURE_FLAGS)

    def __init__(self, source: FeastUserFeatures | None, item_index: Mapping[str, int], spec: art.FeatureSpec) -> None:
        self.source = source
        self.item_index = item_index
        self.recent_len = spec.recent_items_len
        self.n_counts = len(spec.user_count_features)

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> UserFeatureStage:
        feast = config.feast
        source = (
            FeastUserFeatures(
                feast.repo,
                feast.user_view,
                feast.recent_items_field,
                export.spec.user_count_features,
                redis_url=config.redis_url,
                retry_s=config.serving.store_retry_s,
                project=feast.project,
                registry=feast.registry,
            )
            if config.serving.features_enabled
            else None
        )
        return cls(source, export.item_index, export.spec)

    def warmup(self) -> None:
        if self.source is not None:
            with contextlib.suppress(StoreUnavailableError):  # flagged per request until the store answers
                self.source.ping()

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        users = text_column(batch[USER_ID.name])
        recent = np.zeros((len(users), self.recent_len), dtype=np.int64)
        dense = np.zeros((len(users), self.n_counts), dtype=np.float32)
        flags = flag_column(len(users))
        known = [i for i, u in enumerate(users) if u]
        if known and self.source is None:
            flags[known, 0] |= FLAG_BITS[FEATURES_UNAVAILABLE]
        elif known and self.source is not None:
            try:
                rows = self.source.read([users[i] for i in known])
            except StoreUnavailableError:
                flags[known, 0] |= FLAG_BITS[FEATURES_UNAVAILABLE]
            else:
                for i, (items, counts) in zip(known, rows, strict=True):
                    idx = [self.item_index.get(item, 0) for item in items[: self.recent_len]]
                    recent[i, : len(idx)] = idx
                    dense[i, : len(counts)] = counts[: self.n_counts]
        return {RECENT_ITEMS.name: recent, USER_DENSE.name: dense, FEATURE_FLAGS.name: flags}

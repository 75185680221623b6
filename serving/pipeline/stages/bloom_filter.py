"""Drop the candidates the user has seen or disliked (the streams worker keeps one Bloom filter per user)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import BLOOM_CANDIDATES, BLOOM_FLAGS, CANDIDATES
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import LiveCatalog, process_catalog
from serving.pipeline.stage import Stage, Tensors, flag_column, text_column
from serving.pipeline.stores import BloomChecker
from streamrec.errors import StoreUnavailableError
from streamrec.pipeline_client import BLOOM_UNAVAILABLE, FLAG_BITS, USER_ID


class BloomStage(Stage):
    """One BF.MEXISTS per user, one round trip per batch. If the store is unreachable (or switched off),
    candidates pass through unchanged and the request is flagged. Item ids come from the live catalog's
    snapshot; an index it does not hold yet is dropped."""

    name = "bloom_filter"
    inputs = (USER_ID, CANDIDATES)
    outputs = (BLOOM_CANDIDATES, BLOOM_FLAGS)

    def __init__(self, checker: BloomChecker | None, catalog: LiveCatalog) -> None:
        self.checker = checker
        self.catalog = catalog

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> BloomStage:
        s = config.serving
        checker = (
            BloomChecker(config.redis_url, config.bloom, timeout_s=s.store_timeout_s, retry_s=s.store_retry_s)
            if s.bloom_enabled
            else None
        )
        return cls(checker, process_catalog(config, export))

    def warmup(self) -> None:
        if self.checker is not None:
            with contextlib.suppress(StoreUnavailableError):
                self.checker.ping()

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        users = text_column(batch[USER_ID.name])
        candidates = np.array(batch[CANDIDATES.name], dtype=np.int64, copy=True)
        snap = self.catalog.snapshot
        candidates[~snap.known(candidates)] = 0  # an index this process has not received yet: unknown
        flags = flag_column(len(users))
        rows = [i for i, u in enumerate(users) if u]
        if rows and self.checker is None:
            flags[rows, 0] |= FLAG_BITS[BLOOM_UNAVAILABLE]
        elif rows and self.checker is not None:
            positions = [np.flatnonzero(candidates[i] > 0) for i in rows]
            requests = [
                (users[i], list(snap.item_ids_of(candidates[i, pos]))) for i, pos in zip(rows, positions, strict=True)
            ]
            try:
                seen = self.checker.contains(requests)
            except StoreUnavailableError:
                flags[rows, 0] |= FLAG_BITS[BLOOM_UNAVAILABLE]
            else:
                for i, pos, hits in zip(rows, positions, seen, strict=True):
                    candidates[i, pos[np.asarray(hits, dtype=bool)]] = 0
        return {BLOOM_CANDIDATES.name: candidates, BLOOM_FLAGS.name: flags}

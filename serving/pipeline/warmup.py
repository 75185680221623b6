"""Warm-up before the first request: connect the stores and run each stage a few times on one anonymous
request (TorchScript optimises on its first calls), so no client pays the one-time costs."""

from __future__ import annotations

import numpy as np

from serving.pipeline import contract as c
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import export_catalog
from serving.pipeline.stage import Stage, Tensors
from serving.settings import ServingSettings
from streamrec.pipeline_client import RecommendRequest, request_arrays


def warm_batch(export: ExportReader, serving: ServingSettings) -> Tensors:
    """A one-row batch holding every tensor of the pipeline (anonymous user: no store I/O)."""
    spec = export.spec
    n = min(serving.retrieval_candidates, export.metadata.n_items)
    cand = np.zeros((1, serving.retrieval_candidates), dtype=np.int64)
    cand[0, :n] = np.arange(1, n + 1)
    snap = export_catalog(export).snapshot
    category, content = snap.category_of(cand), snap.content_of(cand)
    batch = request_arrays([RecommendRequest(user_id=None, timestamp_ms=1_767_225_600_000)])
    batch.update(
        {
            c.USER_IDX.name: np.zeros((1, 1), np.int64),
            c.PROFILE_IDX.name: np.zeros((1, len(spec.profile_fields)), np.int64),
            c.CONTEXT_IDX.name: np.zeros((1, 3), np.int64),
            c.CONTEXT_FLAGS.name: np.zeros((1, 1), np.int32),
            c.RECENT_ITEMS.name: np.zeros((1, spec.recent_items_len), np.int64),
            c.USER_DENSE.name: np.zeros((1, len(spec.user_count_features)), np.float32),
            c.FEATURE_FLAGS.name: np.zeros((1, 1), np.int32),
            c.QUERY.name: export.items.embeddings[:1].astype(np.float32),
            c.CANDIDATES.name: cand,
            c.BLOOM_CANDIDATES.name: cand,
            c.BLOOM_FLAGS.name: np.zeros((1, 1), np.int32),
            c.FILTERED_CANDIDATES.name: cand,
            c.ITEM_CATEGORY.name: category,
            c.ITEM_CONTENT.name: content,
            c.RANK_SCORES.name: np.zeros((1, cand.shape[1]), np.float32),
        }
    )
    return batch


def warm_up(stage: Stage, batch: Tensors, runs: int = 3) -> None:
    stage.warmup()
    for _ in range(runs):
        stage.run({name: batch[name] for name in stage.input_names()})

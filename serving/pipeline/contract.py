"""The tensors the stages pass to each other inside the pipeline (name, Triton type, dims without the batch
dimension). The pipeline's own inputs and outputs, which clients see, are :mod:`streamrec.pipeline_client`'s
``PIPELINE_INPUTS`` / ``PIPELINE_OUTPUTS``; every stage declares its schema from these two places only, and the
Triton configs, the ensemble's maps and the reference pipeline are derived from the stages' declarations.

Item index 0 is padding / unknown everywhere (as in the export). Candidates travel as INT64 [N] per request with
N fixed by retrieval; stages that drop an item set it to 0, so shapes stay fixed and requests batch together.
"""

from __future__ import annotations

from streamrec.pipeline_client import TensorSpec

USER_IDX = TensorSpec("USER_IDX", "INT64", (1,))  # 0: anonymous or unknown user
PROFILE_IDX = TensorSpec("PROFILE_IDX", "INT64", (-1,))  # [P] profile field indices
CONTEXT_IDX = TensorSpec("CONTEXT_IDX", "INT64", (3,))  # device, hour, weekday
CONTEXT_FLAGS = TensorSpec("CONTEXT_FLAGS", "INT32", (1,))
RECENT_ITEMS = TensorSpec("RECENT_ITEMS", "INT64", (-1,))  # [R] item indices, newest first
USER_DENSE = TensorSpec("USER_DENSE", "FP32", (-1,))  # [U] raw count features
FEATURE_FLAGS = TensorSpec("FEATURE_FLAGS", "INT32", (1,))
QUERY = TensorSpec("QUERY", "FP32", (-1,))  # [D] L2-normalised query embedding
CANDIDATES = TensorSpec("CANDIDATES", "INT64", (-1,))  # [N] retrieved item indices
BLOOM_CANDIDATES = TensorSpec("BLOOM_CANDIDATES", "INT64", (-1,))  # [N] seen items set to 0
BLOOM_FLAGS = TensorSpec("BLOOM_FLAGS", "INT32", (1,))
FILTERED_CANDIDATES = TensorSpec("FILTERED_CANDIDATES", "INT64", (-1,))  # [N] request filters applied
ITEM_CATEGORY = TensorSpec("ITEM_CATEGORY", "INT64", (-1,))  # [N]
ITEM_CONTENT = TensorSpec("ITEM_CONTENT", "FP32", (-1, -1))  # [N, Q + T + I] dense, text, image
RANK_SCORES = TensorSpec("RANK_SCORES", "FP32", (-1,))  # [N] ranker logits, -inf for padding

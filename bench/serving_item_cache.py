"""Item-feature ablation, one run, same data: per-item Feast lookups (the reference system's pattern: one
online read per candidate) vs one batched Feast read vs the in-memory cache stage serving uses.

    .venv/bin/python bench/serving_item_cache.py --export-root EXPORTS [--candidates 300] [--repeats 30]

Needs Redis/Valkey (the local stack, or REDIS_URL). The export's item features are written to a throwaway
Feast project first, so all three paths return the same numbers (checked).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from serving_common import ITEM_VIEW, dump, feast_repo, git_rev, machine, percentiles

from serving.pipeline.contract import FILTERED_CANDIDATES, ITEM_CONTENT
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import export_catalog
from serving.pipeline.stages.item_features import ItemFeatureCache, ItemFeatureStage
from serving.pipeline.stores import open_feature_store
from streamrec.features import FEAST_ITEM_ENTITY_KEY
from streamrec.settings import PathsSettings, RedisSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-root", type=Path, default=PathsSettings.load().export_root)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    export = ExportReader.current(args.export_root)
    redis_url = RedisSettings.load().effective_url
    work = Path(tempfile.mkdtemp(prefix="sr-item-ablation-"))
    project = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        repo = feast_repo(work / "repo", redis_url, project, export, with_items=True)
        store = open_feature_store(repo, redis_url)
        features = [f"{ITEM_VIEW}:category_idx", f"{ITEM_VIEW}:content"]
        stage = ItemFeatureStage(ItemFeatureCache(export_catalog(export)))
        rng = np.random.default_rng(1)
        n_items = export.metadata.n_items
        per_item, batched, cached = [], [], []
        for _ in range(args.repeats):
            cand = rng.choice(np.arange(1, n_items + 1), size=args.candidates, replace=False)
            ids = [export.id_maps.item_ids[i - 1] for i in cand]
            start = time.perf_counter()
            rows = [
                store.get_online_features(features=features, entity_rows=[{FEAST_ITEM_ENTITY_KEY: i}]).to_dict()
                for i in ids
            ]
            per_item.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            batch = store.get_online_features(
                features=features, entity_rows=[{FEAST_ITEM_ENTITY_KEY: i} for i in ids]
            ).to_dict()
            batched.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            out = stage.run({FILTERED_CANDIDATES.name: cand.reshape(1, -1).astype(np.int64)})
            cached.append((time.perf_counter() - start) * 1000)
            # Same numbers on every path.
            feast_content = np.array([r["content"][0] for r in rows], dtype=np.float32)
            if not np.allclose(feast_content, out[ITEM_CONTENT.name][0], atol=1e-6):
                raise SystemExit("per-item Feast content differs from the cache")
            if not np.allclose(np.array(batch["content"], dtype=np.float32), out[ITEM_CONTENT.name][0], atol=1e-6):
                raise SystemExit("batched Feast content differs from the cache")
        # The cache stage alone, many calls in a row (its cost without the Feast calls' cache pollution in between).
        loop = []
        for _ in range(2000):
            cand = rng.choice(np.arange(1, n_items + 1), size=args.candidates, replace=False).reshape(1, -1)
            start = time.perf_counter()
            stage.run({FILTERED_CANDIDATES.name: cand})
            loop.append((time.perf_counter() - start) * 1000)
        result = {
            "bench": "serving_item_cache",
            "machine": machine(),
            "git": git_rev(),
            "export": export.version,
            "n_items": n_items,
            "candidates": args.candidates,
            "repeats": args.repeats,
            "per_item_feast_ms": percentiles(per_item),
            "batched_feast_ms": percentiles(batched),
            "cache_stage_ms": percentiles(cached),
            "cache_stage_loop_ms": percentiles(loop),
            "speedup_p50_vs_per_item": round(float(np.median(per_item) / np.median(cached)), 1),
            "speedup_p50_vs_batched": round(float(np.median(batched) / np.median(cached)), 1),
            "speedup_p50_vs_per_item_loop": round(float(np.median(per_item) / np.median(loop)), 1),
        }
        dump(result, args.out)
        store.teardown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

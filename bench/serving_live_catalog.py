"""What following the live catalog adds per request, one run, side by side on one export:

* the reference pipeline (every stage in one process, stores off) on the export alone, then with a share of
  the export's items masked, then with items added by the live catalog as well (p50/p99 per request, and the
  retrieval and rerank stages alone);
* applying a batch of changes (a new snapshot) with that many added items already held;
* the follower's idle cost: one blocking read of the change stream per ``block_ms`` (Redis round trips per
  second, CPU seconds used by the process while idle);
* propagation: an entry published -> the follower's snapshot holds it (added item; item made unavailable).

    .venv/bin/python bench/serving_live_catalog.py --export-root EXPORTS [--masked 0.05] [--added 1000]

Needs Redis/Valkey for the idle-follower part (the local stack, or REDIS_URL); ``--no-redis`` skips it.
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from serving_common import dump, git_rev, machine, percentiles

from serving.pipeline.catalog_snapshot import CatalogSnapshot
from serving.pipeline.config import StageConfig
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import LiveCatalog, export_catalog, redis_source
from serving.pipeline.reference import ReferencePipeline
from serving.settings import ServingSettings
from streamrec.catalog.live import LiveItem, LiveKeys, LiveVectors
from streamrec.pipeline_client import RecommendRequest, request_arrays, timing_stage
from streamrec.settings import PathsSettings, RedisSettings


def added_items(export: ExportReader, start: int, count: int, seed: int) -> list[LiveItem]:
    rng = np.random.default_rng(seed)
    items = export.items
    rows = rng.integers(0, len(items.category_idx), size=count)
    out = []
    for j, r in enumerate(rows):
        noise = np.asarray(rng.normal(scale=0.05, size=items.embeddings.shape[1]), dtype=np.float32)
        vec = LiveVectors(items.embeddings[r] + noise, items.dense[r], items.text[r], items.image[r])
        out.append(LiveItem(f"bench-new-{start + j}", start + j, True, 1, int(items.category_idx[r]), vec))
    return out


def run_interleaved(pipelines: dict[str, ReferencePipeline], requests: list[RecommendRequest]) -> dict[str, Any]:
    """Every request on every pipeline, the order rotating per request, so that the box's load (shared, busy)
    falls on all of them alike."""
    names = list(pipelines)
    total: dict[str, list[float]] = {n: [] for n in names}
    stages: dict[str, dict[str, list[float]]] = {n: {s: [] for s in STAGES_SHOWN} for n in names}
    for i, request in enumerate(requests):
        arrays = request_arrays([request])
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            out = pipelines[name].run(arrays)
            total[name].append((time.perf_counter() - start) * 1000)
            for tensor, value in out.items():
                stage = timing_stage(tensor)
                if stage in stages[name]:
                    stages[name][stage].append(float(value[0, 0]))
    return {
        n: {"request_ms": percentiles(total[n]), **{f"{s}_ms": percentiles(v) for s, v in stages[n].items()}}
        for n in names
    }


STAGES_SHOWN = ("retrieval", "bloom_filter", "request_filters", "item_features", "rerank")


def idle_follower(redis_url: str, snapshot: CatalogSnapshot, seconds: float, block_ms: int) -> dict[str, Any]:
    """A follower on an empty live catalog: its polls per second and the CPU it burns doing nothing."""
    keys = LiveKeys.for_version(f"bench-{uuid.uuid4().hex[:8]}")
    catalog = LiveCatalog(snapshot)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    follower = catalog.follow(lambda: redis_source(redis_url, keys, 5.0, block_ms), block_ms, 1.0)
    time.sleep(seconds)
    polls, errors = follower.stats.polls, follower.stats.errors
    catalog.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "block_ms": block_ms,
        "seconds": seconds,
        "polls_per_s": round(polls / seconds, 1),
        "errors": errors,
        "process_cpu_percent_while_idle": round(100 * cpu_s / seconds, 2),
    }


def propagation(redis_url: str, export: ExportReader, count: int, block_ms: int) -> dict[str, Any]:
    """Entry published (the sync's ``publish``) -> the follower's snapshot shows it, ``count`` times each for an
    added item and for an item made unavailable, one at a time: the serving side's share of the delay from a
    catalog record to the answers (a request that starts after the swap sees the change)."""
    import redis

    from serving.pipeline.catalog_snapshot import CatalogSnapshot
    from streamrec.catalog.live import LiveCatalogWriter

    keys = LiveKeys.for_version(f"bench-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(redis_url)
    n = export.metadata.n_items
    writer = LiveCatalogWriter(client, keys, n)
    catalog = LiveCatalog(CatalogSnapshot.of_export(export_catalog(export).snapshot.base))
    catalog.follow(lambda: redis_source(redis_url, keys, 5.0, block_ms), block_ms, 1.0)
    added_ms, masked_ms = [], []
    try:
        for j, item in enumerate(added_items(export, n + 1, count, seed=8)):
            index = writer.index_for(item.item_id)
            entry = LiveItem(item.item_id, index, True, 1, item.category_idx, item.vectors)
            start = time.perf_counter()
            writer.publish([entry])
            while catalog.snapshot.n_items < index:
                time.sleep(0.0002)
            added_ms.append((time.perf_counter() - start) * 1000)
            target = np.array([1 + j % n])
            start = time.perf_counter()
            writer.publish([LiveItem(export.id_maps.item_ids[j % n], 1 + j % n, False, 2 + j)])
            while catalog.snapshot.servable(target)[0]:
                time.sleep(0.0002)
            masked_ms.append((time.perf_counter() - start) * 1000)
            writer.publish([LiveItem(export.id_maps.item_ids[j % n], 1 + j % n, True, 3 + j)])
    finally:
        catalog.close()
        client.delete(keys.state, keys.changes, keys.index, keys.next_index)
        client.close()
    return {"block_ms": block_ms, "added_ms": percentiles(added_ms), "unavailable_ms": percentiles(masked_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-root", type=Path, default=PathsSettings.load().export_root)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--masked", type=float, default=0.05, help="share of the export's items made unavailable")
    parser.add_argument("--added", type=int, default=1000, help="items added by the live catalog")
    parser.add_argument("--batch", type=int, default=50, help="changes per applied batch")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--block-ms", type=int, default=100)
    parser.add_argument("--propagation", type=int, default=200, help="publishes timed until the snapshot shows them")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    serving = ServingSettings(bloom_enabled=False, features_enabled=False, live_catalog_enabled=False)
    pipelines: dict[str, ReferencePipeline] = {}
    for name in ("export_only", "masked", "masked_and_added"):
        export = ExportReader.current(args.export_root)  # one reader each: one catalog each
        config = StageConfig(export_dir=export.directory, export_version=export.version, serving=serving)
        pipelines[name] = ReferencePipeline(config, export)
    export = pipelines["export_only"].export
    n = export.metadata.n_items
    rng = np.random.default_rng(5)
    masked_rows = rng.choice(np.arange(1, n + 1), size=int(n * args.masked), replace=False)
    ids = export.id_maps.item_ids
    masks = [LiveItem(ids[i - 1], int(i), False, 1) for i in masked_rows]
    news = added_items(export, n + 1, args.added, seed=6)
    export_catalog(pipelines["masked"].export).apply(masks)
    export_catalog(pipelines["masked_and_added"].export).apply([*masks, *news])
    users = export.id_maps.user_ids
    requests = [
        RecommendRequest(user_id=users[int(rng.integers(len(users)))], k=10, timestamp_ms=1_764_000_000_000 + i)
        for i in range(args.requests)
    ]
    run_interleaved(pipelines, requests[:50])  # warm
    result: dict[str, Any] = {
        "bench": "serving_live_catalog",
        "machine": machine(),
        "git": git_rev(),
        "export": export.version,
        "n_items": n,
        "index": export.metadata.index.type,
        "requests": args.requests,
        "masked_items": len(masks),
        "added_items": len(news),
        "note": "stores off (Bloom, Feast): the compute path only; one process, one request at a time, the three "
        "catalogs interleaved request by request",
        **run_interleaved(pipelines, requests),
    }
    catalog = export_catalog(pipelines["masked_and_added"].export)
    # A batch of changes on top of what is held: half new items, half availability flips.
    applies = []
    half = args.batch // 2
    more = added_items(export, n + args.added + 1, 20 * half, seed=7)
    for b in range(20):
        batch = more[b * half : (b + 1) * half]
        flips = [LiveItem(news[j].item_id, news[j].index, bool(b % 2), 2 + b) for j in range(half)]
        start = time.perf_counter()
        catalog.apply([*batch, *flips])
        applies.append((time.perf_counter() - start) * 1000)
    result["apply_batch_ms"] = {"changes": args.batch, **percentiles(applies)}
    for key in ("masked", "masked_and_added"):
        result[f"{key}_vs_export_only_p50"] = round(
            result[key]["request_ms"]["p50"] / result["export_only"]["request_ms"]["p50"], 3
        )
    if not args.no_redis:
        result["idle_follower"] = idle_follower(
            RedisSettings.load().effective_url,
            export_catalog(pipelines["export_only"].export).snapshot,
            args.idle_seconds,
            args.block_ms,
        )
        result["propagation"] = propagation(
            RedisSettings.load().effective_url, pipelines["export_only"].export, args.propagation, args.block_ms
        )
    dump(result, args.out)


if __name__ == "__main__":
    main()

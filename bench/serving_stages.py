"""The stage pipeline in-process (the reference pipeline, no Triton) on CPU or GPU: per-stage cost and batched
throughput. Used for the H100 figures, where tritonserver cannot run (see docs/bench/serving.md).

    .venv/bin/python bench/serving_stages.py --export-root EXPORTS --device cpu|cuda [--stores]

Without ``--stores`` the Feast read and the Bloom check are switched off (their stages pass through, flagged):
only the compute path is measured. Single stream: one request at a time, p50/p99 per request and per stage.
Batched: B requests per pipeline run, as Triton's dynamic batcher would hand them to every stage.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from serving_common import dump, git_rev, machine, percentiles

from serving.pipeline.config import StageConfig
from serving.pipeline.export import ExportReader
from serving.pipeline.reference import ReferencePipeline
from serving.settings import ServingSettings
from streamrec import artifacts as art
from streamrec.pipeline_client import RecommendRequest, request_arrays, timing_stage
from streamrec.settings import RedisSettings

DEVICES = ("mobile", "desktop", "tablet")


def requests(export: ExportReader, n: int, k: int, seed: int) -> list[RecommendRequest]:
    rng = np.random.default_rng(seed)
    users = export.id_maps.user_ids
    return [
        RecommendRequest(
            user_id=None if rng.random() < 0.1 else users[int(rng.integers(len(users)))], k=k, device=DEVICES[i % 3]
        )
        for i in range(n)
    ]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-root", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stores", action="store_true", help="use Feast and the Bloom filters (needs Redis)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--single", type=int, default=1000, help="single-stream requests")
    parser.add_argument("--batches", default="1,8,32,128", help="batch sizes for the throughput runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="per batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    directory = art.current_dir(args.export_root)
    serving = ServingSettings(
        features_enabled=args.stores,
        bloom_enabled=args.stores,
        torch_threads=args.threads,
    )
    config = StageConfig(
        export_dir=directory,
        export_version=directory.name,
        serving=serving,
        redis_url=RedisSettings.load().effective_url,
        device=args.device,
    )
    pipeline = ReferencePipeline(config)
    export = pipeline.export
    single_lat: list[float] = []
    stage_ms: dict[str, list[float]] = {}
    for request in requests(export, args.single, args.k, seed=1):
        start = time.perf_counter()
        out = pipeline.run(request_arrays([request]))
        sync(args.device)
        single_lat.append((time.perf_counter() - start) * 1000)
        for name, value in out.items():
            stage = timing_stage(name)
            if stage is not None:
                stage_ms.setdefault(stage, []).append(float(value[0, 0]))
    batched: dict[str, Any] = {}
    pool = requests(export, 4096, args.k, seed=2)
    for size in (int(b) for b in args.batches.split(",")):
        tensors = [request_arrays(pool[i : i + size]) for i in range(0, len(pool) - size + 1, size)]
        done, lat, start = 0, [], time.perf_counter()
        i = 0
        while time.perf_counter() - start < args.seconds:
            t0 = time.perf_counter()
            pipeline.run(tensors[i % len(tensors)])
            sync(args.device)
            lat.append((time.perf_counter() - t0) * 1000)
            done += size
            i += 1
        elapsed = time.perf_counter() - start
        batched[str(size)] = {"requests_per_s": round(done / elapsed, 1), "batch_latency_ms": percentiles(lat)}
    info = machine()
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    dump(
        {
            "bench": "serving_stages",
            "device": args.device,
            "stores": args.stores,
            "torch": torch.__version__,
            "torch_threads": args.threads,
            "export": export.version,
            "n_items": export.metadata.n_items,
            "retrieval_candidates": serving.retrieval_candidates,
            "k": args.k,
            "machine": info,
            "git": git_rev(),
            "single_stream_ms": percentiles(single_lat),
            "stage_p50_ms": {k: round(float(np.median(v)), 4) for k, v in stage_ms.items()},
            "stage_p99_ms": {k: round(float(np.percentile(v, 99)), 4) for k, v in stage_ms.items()},
            "batched": batched,
        },
        args.out,
    )


if __name__ == "__main__":
    main()

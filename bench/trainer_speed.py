"""Trainer speed benchmarks (targets in docs/bench/trainer.md).

    python bench/trainer_speed.py ml100k --out DIR
        full training (both models, index, export) on MovieLens-100K; target <= 2 min on the 2-core CPU
    python bench/trainer_speed.py latency --export-root DIR
        CPU latency of the exported TorchScript models as serving calls them (query tower B=1; ranker B=1,
        N=300 candidates), median and p99 over 200 calls after warm-up
    python bench/trainer_speed.py reference --out DIR [--root ROOT] [--full-cap N] [--skip-full]
        reference-scale synthetic data (generated if ROOT lacks it): full training on days 1-13 and the
        daily fine-tune on day 14 (~930k events); targets: fine-tune <= 10 min on the 2-core CPU and
        <= 60 s on one H100, full training <= 10 min on one H100

Each run writes ``<out>/<name>.json`` with wall times and samples/s, and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from streamrec.archive import partition_dates
from trainer.data import movielens, synthetic
from trainer.data.common import ORACLE_FILE
from trainer.data.synthetic import Oracle
from trainer.eval.protocol import evaluate_scorer, metrics_of
from trainer.settings import TrainerSettings
from trainer.train.finetune import run_finetune
from trainer.train.full import run_full


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def settings_for(device: str, batch_size: int, cache_dir: Path, **extra: Any) -> TrainerSettings:
    return TrainerSettings(device=device, batch_size=batch_size, progress=False, cache_dir=cache_dir, **extra)  # type: ignore[arg-type]


def bench_ml100k(out: Path, device: str, cache_dir: Path) -> dict[str, Any]:
    root = out / "data" / "ml-100k"
    began = time.perf_counter()
    movielens.prepare(root)
    prepare_s = time.perf_counter() - began
    settings = settings_for(device, 1024, cache_dir, checkpoint_dir=out / "ckpt")
    summary = run_full(root, out / "exports-ml", settings, resume=False)
    return {"prepare_s": round(prepare_s, 1), "full_train_wall_s": round(summary.seconds, 1), "stages": summary.stages}


def bench_reference(
    out: Path, root: Path, device: str, batch: int, cache_dir: Path, full_cap: int, skip_full: bool
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if not partition_dates(root):
        began = time.perf_counter()
        info = synthetic.prepare(root, synthetic.SyntheticConfig.preset("reference"))
        result["generate_s"] = round(time.perf_counter() - began, 1)
        result["sizes"] = info["sizes"]
    days = partition_dates(root)
    last = days[-1]
    exports = out / "exports-ref"
    settings = settings_for(device, batch, cache_dir, checkpoint_dir=out / "ckpt", max_examples_per_epoch=full_cap)
    if not skip_full:
        summary = run_full(root, exports, settings, end=date.fromordinal(last.toordinal() - 1), resume=False)
        result["full_train_wall_s"] = round(summary.seconds, 1)
        result["full_events"] = summary.events
        result["full_stages"] = summary.stages
        print(json.dumps({"full": result}, indent=1), flush=True)
    fine = run_finetune(root, exports, settings.model_copy(update={"max_examples_per_epoch": 0}), day=last)
    result["finetune_wall_s"] = round(fine.seconds, 1)
    result["finetune_train_s"] = round(fine.metrics.get("train_seconds", 0.0), 1)
    result["finetune_events"] = fine.events
    result["finetune_stages"] = fine.stages
    result["finetune_promoted"] = fine.promoted
    result["finetune_reason"] = fine.reason
    result["finetune_metrics"] = {k: round(v, 4) for k, v in fine.metrics.items()}
    task, dataset = fine.extras["task"], fine.extras["dataset"]
    oracle = Oracle.load(root / ORACLE_FILE, dataset.users.user_ids, dataset.catalog.item_ids)
    oracle_metrics = metrics_of(task, evaluate_scorer(task, lambda rows: oracle.scores(task.users[rows])))
    result["holdout_oracle"] = {k: round(v, 4) for k, v in oracle_metrics.items()}
    return result


def bench_latency(export_root: Path, threads: int) -> dict[str, Any]:
    import numpy as np

    from streamrec import artifacts as art
    from streamrec import features as feat

    torch.set_num_threads(threads)
    directory = art.current_dir(export_root)
    meta = art.load_metadata(directory)
    arrays = art.load_item_arrays(directory, meta)
    query = torch.jit.load(str(directory / art.QUERY_TOWER_FILE))
    ranker = torch.jit.load(str(directory / art.RANKER_FILE))
    p = len(meta.feature_spec.profile_fields)
    gen = torch.Generator().manual_seed(0)

    def timed(fn: Any, calls: int = 200) -> dict[str, float]:
        for _ in range(20):
            fn()
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            fn()
            times.append((time.perf_counter() - began) * 1000)
        return {"p50_ms": round(float(np.median(times)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)}

    query_inputs = {
        feat.MODEL_USER_IDX: torch.tensor([1]),
        feat.MODEL_PROFILE_IDX: torch.ones(1, p, dtype=torch.long),
        feat.MODEL_RECENT_ITEMS: torch.randint(1, meta.n_items + 1, (1, 20), generator=gen),
        feat.MODEL_CONTEXT_IDX: torch.tensor([[1, 20, 4]]),
    }
    n = 300
    items = torch.randint(1, meta.n_items + 1, (1, n), generator=gen)
    rows = items - 1
    ranker_inputs = {
        **query_inputs,
        feat.MODEL_USER_DENSE: torch.rand(1, len(meta.feature_spec.user_count_features)),
        feat.MODEL_ITEM_IDX: items,
        feat.MODEL_ITEM_CATEGORY: torch.as_tensor(arrays.category_idx)[rows],
        feat.MODEL_ITEM_DENSE: torch.as_tensor(arrays.dense)[rows],
        feat.MODEL_ITEM_TEXT: torch.as_tensor(arrays.text)[rows],
        feat.MODEL_ITEM_IMAGE: torch.as_tensor(arrays.image)[rows],
    }
    with torch.no_grad():
        return {
            "threads": threads,
            "query_tower_b1": timed(lambda: query(query_inputs)),
            "ranker_b1_n300": timed(lambda: ranker(ranker_inputs)),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("ml100k", "reference", "latency"))
    parser.add_argument("--export-root", type=Path, default=Path(".streamrec/exports"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the latency run.")
    parser.add_argument("--out", type=Path, default=Path(".streamrec/bench"))
    parser.add_argument("--root", type=Path, default=Path(".streamrec/data/synthetic-ref"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=0, help="Default: 1024 on CPU, 4096 on GPU.")
    parser.add_argument("--cache-dir", type=Path, default=Path(".streamrec/cache"))
    parser.add_argument("--full-cap", type=int, default=0, help="Examples per epoch of the full run (0 = all).")
    parser.add_argument("--skip-full", action="store_true", help="Fine-tune the export already under --out.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.is_available() and args.device != "cpu"
    batch = args.batch_size or (4096 if gpu else 1024)
    began = time.perf_counter()
    if args.which == "ml100k":
        result = bench_ml100k(args.out, args.device, args.cache_dir)
    elif args.which == "latency":
        result = bench_latency(args.export_root, args.threads)
    else:
        result = bench_reference(args.out, args.root, args.device, batch, args.cache_dir, args.full_cap, args.skip_full)
    result.update({"machine": machine(), "device": "cuda" if gpu else "cpu", "batch_size": batch})
    result["total_wall_s"] = round(time.perf_counter() - began, 1)
    (args.out / f"{args.which}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

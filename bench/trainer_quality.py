"""Trainer quality benchmarks (targets in docs/bench/trainer.md).

    python bench/trainer_quality.py ml100k [--out DIR]
        full pipeline vs popularity and BPR-MF on MovieLens-100K: target >= +5% Recall@10 and NDCG@10
    python bench/trainer_quality.py synthetic [--root ROOT] [--max-users N] [--out DIR]
        end-to-end Recall@10 vs the planted oracle's: target >= 0.9x
    python bench/trainer_quality.py finetune [--root ROOT] [--out DIR]
        daily fine-tune vs full retrain on the newest day's hold-out: Recall@20 within 1% at <= 10% compute

Each writes ``<out>/<name>.json`` (and the eval report for the first two) and prints a verdict per target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamrec.archive import partition_dates
from trainer.data import movielens
from trainer.data.loading import load_dataset
from trainer.embeddings.content import build_content_embeddings
from trainer.eval.run import evaluate_models, run_evaluation
from trainer.settings import TrainerSettings
from trainer.train.finetune import run_finetune, split_for_finetune
from trainer.train.full import run_full
from trainer.train.pipeline import train_models

E2E = "two-tower + DLRM (end to end)"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def bench_ml100k(out: Path, settings: TrainerSettings) -> dict[str, Any]:
    root = out / "data" / "ml-100k"
    movielens.prepare(root)
    result = run_evaluation(root, settings, out / "report-ml-100k")
    e2e = result.results[E2E]
    checks = {}
    for base in ("popularity", "BPR-MF"):
        for metric in ("recall@10", "ndcg@10"):
            lift = e2e[metric] / result.results[base][metric] - 1
            checks[f"{metric} vs {base}"] = {"lift": round(lift, 4), "verdict": verdict(lift >= 0.05)}
    return {"results": result.results, "checks": checks, "context": result.context}


def bench_synthetic(out: Path, root: Path, settings: TrainerSettings, max_users: int) -> dict[str, Any]:
    result = run_evaluation(root, settings, out / f"report-{root.name}", max_users=max_users)
    ratio = result.results[E2E]["recall@10"] / result.results["planted oracle"]["recall@10"]
    retrieval_ratio = result.results["two-tower retrieval"]["recall@10"] / result.results["planted oracle"]["recall@10"]
    return {
        "results": result.results,
        "context": result.context,
        "checks": {
            "e2e recall@10 / oracle": {"ratio": round(ratio, 4), "verdict": verdict(ratio >= 0.9)},
            "retrieval recall@10 / oracle": {"ratio": round(retrieval_ratio, 4)},
        },
    }


def bench_finetune(out: Path, root: Path, settings: TrainerSettings) -> dict[str, Any]:
    """Production = full training up to the day before the newest; candidate = its fine-tune on the newest
    day; reference = a full retrain on everything before the hold-out. Both scored on the same hold-out."""
    days = partition_dates(root)
    last = days[-1]
    exports = out / "exports-finetune"
    run_full(root, exports, settings, end=last - timedelta(days=1), resume=False)
    fine = run_finetune(root, exports, settings, day=last)
    task = fine.extras["task"]
    candidate = fine.extras["candidate"]
    dataset = load_dataset(root)
    split = split_for_finetune(dataset, last, settings)
    content = build_content_embeddings(dataset.catalog.texts, dataset.catalog.images, settings)
    began = time.perf_counter()
    retrained = train_models(dataset, split.history_rows, content, settings)
    retrain_s = time.perf_counter() - began
    scores = {
        "fine-tuned": evaluate_models(candidate, task, settings.retrieval_candidates)[E2E],
        "full retrain": evaluate_models(retrained, task, settings.retrieval_candidates)[E2E],
        "production (before fine-tune)": evaluate_models(fine.extras["production"], task, 300)[E2E],
    }
    ft_s = fine.metrics["train_seconds"]
    gap = scores["fine-tuned"]["recall@20"] / scores["full retrain"]["recall@20"] - 1
    return {
        "results": scores,
        "finetune_train_s": round(ft_s, 2),
        "retrain_train_s": round(retrain_s, 2),
        "finetune_promoted": fine.promoted,
        "finetune_reason": fine.reason,
        "checks": {
            "recall@20 fine-tuned vs retrain": {"gap": round(gap, 4), "verdict": verdict(gap >= -0.01)},
            "compute fine-tune / retrain": {
                "ratio": round(ft_s / retrain_s, 4),
                "verdict": verdict(ft_s <= 0.1 * retrain_s),
            },
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("ml100k", "synthetic", "finetune"))
    parser.add_argument("--out", type=Path, default=Path(".streamrec/bench"))
    parser.add_argument("--root", type=Path, default=Path(".streamrec/data/synthetic"))
    parser.add_argument("--max-users", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = TrainerSettings(progress=False, device=args.device, checkpoint_dir=args.out / "ckpt")
    began = time.perf_counter()
    if args.which == "ml100k":
        result = bench_ml100k(args.out, settings)
    elif args.which == "synthetic":
        result = bench_synthetic(args.out, args.root, settings, args.max_users)
    else:
        result = bench_finetune(args.out, args.root, settings)
    result["total_wall_s"] = round(time.perf_counter() - began, 1)
    (args.out / f"quality-{args.which}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["checks"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

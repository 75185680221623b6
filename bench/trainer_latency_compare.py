"""Latency of two exports' TorchScript models side by side, interleaved in one process (targets: none; it
measures what a change of the exported graph costs or saves).

    python bench/trainer_latency_compare.py BASELINE_ROOT CANDIDATE_ROOT [--device cpu|cuda] [--threads 1]

Each root is an export root (``CURRENT`` + ``versions/``), e.g. ``<out>/exports-ml`` of
``bench/trainer_speed.py ml100k`` run at two commits. An export of ``format_version`` 1 is called with
positional tensors, later ones with one dict keyed by the ``streamrec.features.MODEL_*`` names. Both get
the same inputs (query tower B=1; ranker B=1, N=300 candidates drawn from the candidate export's catalog):
rounds of 50 calls per model alternate between the two exports, and the ratio candidate / baseline of the
p50s is printed. When both exports hold the same weights (same training run), their outputs are compared too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamrec import features as feat


def current_dir(root: Path) -> Path:
    return root / "versions" / (root / "CURRENT").read_text().strip()


def load(root: Path, device: str) -> tuple[int, Any, Any]:
    directory = current_dir(root)
    version = int(json.loads((directory / "metadata.json").read_text())["format_version"])
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.load is deprecated; Triton loads it
    query = torch.jit.load(str(directory / "query_tower.pt"), map_location=device).eval()
    ranker = torch.jit.load(str(directory / "ranker.pt"), map_location=device).eval()
    return version, query, ranker


def inputs(root: Path, device: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    directory = current_dir(root)
    meta = json.loads((directory / "metadata.json").read_text())
    n_items, spec = meta["n_items"], meta["feature_spec"]
    arrays = np.load(directory / "item_features.npz")
    gen = torch.Generator().manual_seed(0)
    query = {
        feat.MODEL_USER_IDX: torch.tensor([1]),
        feat.MODEL_PROFILE_IDX: torch.ones(1, len(spec["profile_fields"]), dtype=torch.long),
        feat.MODEL_RECENT_ITEMS: torch.randint(1, n_items + 1, (1, spec["recent_items_len"]), generator=gen),
        feat.MODEL_CONTEXT_IDX: torch.tensor([[1, 20, 4]]),
    }
    items = torch.randint(1, n_items + 1, (1, 300), generator=gen)
    rows = items - 1
    ranker = {
        **query,
        feat.MODEL_USER_DENSE: torch.rand(1, len(spec["user_count_features"]), generator=gen),
        feat.MODEL_ITEM_IDX: items,
        feat.MODEL_ITEM_CATEGORY: torch.as_tensor(arrays["category_idx"])[rows],
        feat.MODEL_ITEM_DENSE: torch.as_tensor(arrays["dense"])[rows],
        feat.MODEL_ITEM_TEXT: torch.as_tensor(arrays["text"])[rows],
        feat.MODEL_ITEM_IMAGE: torch.as_tensor(arrays["image"])[rows],
    }
    return {k: v.to(device) for k, v in query.items()}, {k: v.to(device) for k, v in ranker.items()}


def caller(version: int, model: Any, named: dict[str, torch.Tensor], names: tuple[str, ...]) -> Any:
    if version == 1:
        positional = [named[n] for n in names]
        return lambda: model(*positional)
    return lambda: model(named)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    query_in, ranker_in = inputs(args.candidate, args.device)
    calls: dict[str, Any] = {}
    for label, root in (("baseline", args.baseline), ("candidate", args.candidate)):
        version, query, ranker = load(root, args.device)
        calls[f"query_tower {label}"] = caller(version, query, query_in, feat.QUERY_TOWER_INPUTS)
        calls[f"ranker {label}"] = caller(version, ranker, ranker_in, feat.RANKER_INPUTS)

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {name: [] for name in calls}
    result: dict[str, Any] = {"device": args.device, "threads": args.threads}
    with torch.no_grad():
        for model in ("query_tower", "ranker"):
            base, cand = calls[f"{model} baseline"](), calls[f"{model} candidate"]()
            result[f"{model} max |candidate - baseline|"] = float((base - cand).abs().max())
        for call in calls.values():
            for _ in range(30):
                call()
        sync()
        for _ in range(args.rounds):
            for name, call in calls.items():
                for _ in range(50):
                    began = time.perf_counter()
                    call()
                    sync()
                    times[name].append((time.perf_counter() - began) * 1000)
    for name, values in times.items():
        result[name] = {
            "p50_ms": round(float(np.median(values)), 4),
            "p99_ms": round(float(np.percentile(values, 99)), 3),
        }
    for model in ("query_tower", "ranker"):
        ratio = result[f"{model} candidate"]["p50_ms"] / result[f"{model} baseline"]["p50_ms"]
        result[f"{model} p50 candidate / baseline"] = round(ratio, 3)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

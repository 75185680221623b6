"""CLI plugin: ``streamrec data``, ``streamrec train full|finetune``, ``streamrec eval``.

Heavy imports (torch, faiss, sentence-transformers) happen inside the handlers so that other commands
start fast. Handlers raise :class:`streamrec.errors.StreamrecError`; the core CLI prints one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.errors import ConfigError
from streamrec.settings import PathsSettings
from trainer.settings import TrainerSettings

DATASETS = ("ml-100k", "synthetic")
PRESETS = ("tiny", "small", "reference")


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _settings(args: argparse.Namespace) -> TrainerSettings:
    overrides = {}
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    if getattr(args, "no_progress", False):
        overrides["progress"] = False
    if getattr(args, "device", None):
        overrides["device"] = args.device
    base: TrainerSettings = TrainerSettings.load()
    return base.model_copy(update=overrides) if overrides else base


def _data_root(args: argparse.Namespace) -> Path:
    if getattr(args, "data", None):
        return Path(args.data)
    return PathsSettings.load().dataset_root(args.dataset)


def _export_root(args: argparse.Namespace) -> Path:
    return Path(args.export_root) if getattr(args, "export_root", None) else PathsSettings.load().export_root


# ---------------------------------------------------------------------------------------------------- data


def setup_data(parser: argparse.ArgumentParser) -> CommandHandler:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    prep = sub.add_parser("prepare", help="Write a dataset in the archive layout.")
    prep.add_argument("--dataset", choices=DATASETS, required=True)
    prep.add_argument("--preset", choices=PRESETS, default="small", help="Synthetic sizes (default small).")
    prep.add_argument("--seed", type=int, default=None, help="Synthetic seed (default: the trainer seed).")
    prep.add_argument("--out", help="Output root (default: <data_root>/<dataset>).")
    for flag in ("users", "items", "events", "days"):
        prep.add_argument(f"--{flag}", type=int, default=None, help=f"Override the preset's number of {flag}.")
    prep.add_argument(
        "--new-items",
        type=int,
        default=None,
        help="Synthetic: launch this many items on the last days (cold-start evaluation; default 0).",
    )
    prep.add_argument(
        "--new-item-days", type=int, default=None, help="Synthetic: launch them on one of the last N days (1)."
    )
    return handle_data


def handle_data(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else PathsSettings.load().dataset_root(args.dataset)
    if args.dataset == "ml-100k":
        from trainer.data import movielens

        info = movielens.prepare(out)
    else:
        from trainer.data import synthetic

        config = synthetic.SyntheticConfig.preset(args.preset, seed=_settings(args).seed)
        config = config.with_sizes(args.users, args.items, args.events, args.days)
        config = config.with_new_items(args.new_items, args.new_item_days)
        info = synthetic.prepare(out, config)
    sizes = info.get("sizes", {})
    print(f"prepared {info['name']} under {out}: {json.dumps(sizes)} ({info.get('start')}..{info.get('end')})")
    return 0


# --------------------------------------------------------------------------------------------------- train


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="Dataset / archive root (default: <data_root>/<dataset>).")
    parser.add_argument("--dataset", default="ml-100k", help="Dataset name under data_root (default ml-100k).")
    parser.add_argument("--start", type=_date, help="First date (UTC) of events to use.")
    parser.add_argument("--end", type=_date, help="Last date (UTC) of events to use.")
    parser.add_argument("--seed", type=int, default=None, help="Override STREAMREC_TRAINER_SEED.")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="Override STREAMREC_TRAINER_DEVICE.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    parser.add_argument(
        "--catalog",
        default="auto",
        help="Item/user tables: auto (the root's items.parquet, else its newest catalog snapshot), latest "
        "(the newest snapshot under the root) or a folder holding items.parquet (default auto).",
    )


def setup_train(parser: argparse.ArgumentParser) -> CommandHandler:
    sub = parser.add_subparsers(dest="mode", metavar="MODE")
    sub.required = True
    full = sub.add_parser("full", help="Train both models, build the index, export and publish.")
    fine = sub.add_parser("finetune", help="Daily job: newest day + replay, promote only if not worse.")
    for p in (full, fine):
        _add_common(p)
        p.add_argument("--export-root", help="Export root (default: STREAMREC_PATHS_EXPORT_ROOT).")
        p.add_argument("--triton-url", help="Triton HTTP URL to reload models on (default: TRITON_URL if set).")
    full.add_argument("--no-resume", action="store_true", help="Ignore checkpoints of an interrupted run.")
    fine.add_argument("--day", type=_date, help="Day to fine-tune on (default: newest archived day).")
    return handle_train


def handle_train(args: argparse.Namespace) -> int:
    settings = _settings(args)
    root, export_root = _data_root(args), _export_root(args)
    if args.mode == "full":
        from trainer.train.full import run_full

        summary = run_full(
            root,
            export_root,
            settings,
            args.start,
            args.end,
            triton_url=args.triton_url,
            resume=not args.no_resume,
            catalog=args.catalog,
        )
    else:
        from trainer.train.finetune import run_finetune

        summary = run_finetune(
            root, export_root, settings, day=args.day, triton_url=args.triton_url, catalog=args.catalog
        )
    print("\n".join(summary.lines()))
    return 0


# ---------------------------------------------------------------------------------------------------- eval


def setup_eval(parser: argparse.ArgumentParser) -> CommandHandler:
    _add_common(parser)
    parser.add_argument("--out", help="Report folder (default: .streamrec/reports/<dataset>).")
    parser.add_argument("--max-users", type=int, default=0, help="Evaluate a sample of test users (0 = all).")
    return handle_eval


def handle_eval(args: argparse.Namespace) -> int:
    from trainer.eval.run import run_evaluation

    settings = _settings(args)
    root = _data_root(args)
    if args.max_users < 0:
        raise ConfigError("--max-users must be >= 0")
    out = Path(args.out) if args.out else Path(".streamrec/reports") / root.name
    result = run_evaluation(root, settings, out, args.start, args.end, max_users=args.max_users)
    for name, values in result.results.items():
        shown = ", ".join(f"{k} {values[k]:.4f}" for k in ("recall@10", "ndcg@10", "recall@20") if k in values)
        print(f"{name}: {shown}")
    for name, values in result.cold_start.items():
        print(f"new items, {name}: recall@10 {values['recall@10']:.4f}, ndcg@10 {values['ndcg@10']:.4f}")
    print(f"report: {result.report}")
    return 0


def register(registry: PluginRegistry) -> None:
    registry.add_settings(TrainerSettings)
    registry.add_command("data", "Prepare datasets (MovieLens-100K, synthetic) in the archive layout.", setup_data)
    registry.add_command("train", "Train models: full, or the daily fine-tune.", setup_train)
    registry.add_command("eval", "Offline evaluation with baselines; writes a markdown report.", setup_eval)

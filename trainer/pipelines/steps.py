"""Pipeline steps around ``streamrec train``/``eval``: snapshot, guardrail, publish.

Run inside the trainer image::

    python -m trainer.pipelines.steps snapshot --source /data/archive --dest /data/snapshots/RUN
    python -m trainer.pipelines.steps guardrail --metrics /data/reports/RUN/metrics.json --min-lift 0.0
    python -m trainer.pipelines.steps publish --staging /models/staging/RUN --export-root /models/exports

Each exits 2 with one line on stderr when it refuses (a guardrail not met is such a refusal: the run fails
before anything is published).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from streamrec import artifacts as art
from streamrec.errors import ArtifactError, StreamrecError

#: The evaluation report's row of the served pipeline, and the baseline it must beat.
CANDIDATE = "two-tower + DLRM (end to end)"
BASELINE = "popularity"


class StepError(StreamrecError):
    """A step refuses: bad input, or a guardrail not met."""


def snapshot(source: Path, dest: Path) -> int:
    """Freeze the data root as it is now: hard links (a copy across file systems); returns the files taken.

    Archive files are never rewritten (written under a temporary name, then renamed), so a hard link keeps the
    exact bytes a run trained on while the archiver goes on. Hidden temporaries of a write in progress are left.
    """
    if not source.is_dir():
        raise StepError(f"snapshot: no data root at {source}")
    if dest.exists() and any(dest.iterdir()):
        raise StepError(f"snapshot: {dest} exists and is not empty (one snapshot per run)")
    taken = 0
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
        taken += 1
    if taken == 0:
        raise StepError(f"snapshot: {source} holds no files")
    return taken


def guardrail(metrics_file: Path, metric: str, min_value: float, min_lift: float) -> str:
    """The candidate must reach ``min_value`` and beat the popularity baseline by ``min_lift`` (0.05 = 5%)."""
    try:
        results = json.loads(metrics_file.read_text())["results"]
        candidate, baseline = results[CANDIDATE][metric], results[BASELINE][metric]
    except FileNotFoundError:
        raise StepError(f"guardrail: no evaluation report at {metrics_file}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StepError(
            f"guardrail: {metrics_file} has no {metric} for {CANDIDATE!r} and {BASELINE!r} ({exc})"
        ) from None
    if candidate < min_value:
        raise StepError(f"guardrail: {metric} {candidate:.4f} is below the floor {min_value:.4f}")
    if candidate < baseline * (1.0 + min_lift):
        raise StepError(
            f"guardrail: {metric} {candidate:.4f} does not beat {BASELINE} {baseline:.4f} by {min_lift:+.1%}"
        )
    return f"guardrail passed: {metric} {candidate:.4f} (floor {min_value:.4f}), {BASELINE} {baseline:.4f}"


def publish(staging: Path, export_root: Path) -> str:
    """Publish the staging root's CURRENT version into the live export root and make it current there."""
    try:
        version = art.read_current(staging)
        final = art.publish(export_root, art.version_dir(staging, version), make_current=True)
    except (ArtifactError, OSError) as exc:
        raise StepError(f"publish: {exc}") from None
    return f"published {final.name} to {export_root}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.pipelines.steps")
    sub = parser.add_subparsers(dest="step", required=True)
    snap = sub.add_parser("snapshot", help="freeze the data root for one run")
    snap.add_argument("--source", type=Path, required=True)
    snap.add_argument("--dest", type=Path, required=True)
    guard = sub.add_parser("guardrail", help="refuse a candidate that does not beat the baseline")
    guard.add_argument("--metrics", type=Path, required=True, help="metrics.json of `streamrec eval`")
    guard.add_argument("--metric", default="recall@10")
    guard.add_argument("--min-value", type=float, default=0.0)
    guard.add_argument("--min-lift", type=float, default=0.0)
    pub = sub.add_parser("publish", help="publish the staged version")
    pub.add_argument("--staging", type=Path, required=True)
    pub.add_argument("--export-root", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.step == "snapshot":
            print(f"snapshot of {args.source}: {snapshot(args.source, args.dest)} files in {args.dest}")
        elif args.step == "guardrail":
            print(guardrail(args.metrics, args.metric, args.min_value, args.min_lift))
        else:
            print(publish(args.staging, args.export_root))
    except StepError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

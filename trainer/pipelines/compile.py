"""``python -m trainer.pipelines.compile --out DIR``: the pipelines' IR YAML (what a KFP cluster runs).

Needs the ``kfp`` SDK (``make pipelines`` builds a venv with it and runs this).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.pipelines.compile")
    parser.add_argument("--out", type=Path, required=True, help="folder for <pipeline>.yaml")
    parser.add_argument("--image", help="trainer image (default: the released streamrec-trainer)")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per training step (default 0: CPU)")
    args = parser.parse_args(argv)
    if args.gpus < 0:
        parser.error("--gpus must be >= 0")
    try:
        from kfp import compiler
    except ImportError:
        print("the kfp SDK is not installed: run `make pipelines` (it builds .venv-pipelines)", file=sys.stderr)
        return 2
    from trainer.pipelines.definitions import DEFAULT_IMAGE, build

    args.out.mkdir(parents=True, exist_ok=True)
    for name, pipeline in build(args.image or DEFAULT_IMAGE, args.gpus).items():
        path = args.out / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, package_path=str(path))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

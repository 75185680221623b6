"""``streamrec demo``: the main job end to end on the embedded local stack."""

from __future__ import annotations

import argparse

from streamrec.cli.plugins import CommandHandler, PluginRegistry


def register(registry: PluginRegistry) -> None:
    def setup(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument("--dataset", default="ml-100k", help="dataset to prepare, train on and replay")
        parser.add_argument("--replay-limit", type=int, default=20_000, help="events replayed into Kafka")
        parser.add_argument("--retrain", action="store_true", help="train even if an export is published")
        parser.add_argument("--no-wait", action="store_true", help="stop after the showcase instead of running on")

        def run(args: argparse.Namespace) -> int:
            from streamrec.demo.runner import Demo, DemoOptions

            options = DemoOptions(args.dataset, args.replay_limit, args.retrain, not args.no_wait)
            return Demo(available=set(registry.commands), options=options).run()

        return run

    registry.add_command("demo", "run the main job end to end on the embedded local stack (Ctrl-C stops)", setup)

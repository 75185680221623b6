"""CLI plugin: ``streamrec worker`` and ``streamrec features apply``.

Registration only builds argparse parsers; Faust and Feast (seconds to import) load inside the handlers.
"""

from __future__ import annotations

import argparse
import sys

from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streams.settings import StreamsSettings


def _worker(args: argparse.Namespace) -> int:
    overrides = {}
    if args.app_id:
        overrides["app_id"] = args.app_id
    if args.web_port:
        overrides["web_port"] = args.web_port
    base = StreamsSettings.load()
    settings = base.model_copy(update=overrides) if overrides else base
    if args.workers > 1:
        from streams.supervisor import Supervisor

        return Supervisor(args.workers, settings).run()
    from streams.worker import run

    return run(settings)


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers must be a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers must be at least 1, got {n}")
    return n


def _features(args: argparse.Namespace) -> int:
    from streamrec.settings import FeastSettings, PathsSettings, RedisSettings
    from streams.feast_store import apply_repo

    summary = apply_repo(
        FeastSettings.load(),
        RedisSettings.load(),
        PathsSettings.load(),
        dataset=args.dataset,
        materialize=args.materialize,
        echo=lambda line: print(f"  {line}", file=sys.stderr, flush=True),
    )
    print(f"applied {len(summary.objects)} Feast objects to project {summary.project} (registry {summary.registry})")
    for name in summary.objects:
        print(f"  {name}")
    for view, rows in summary.materialized.items():
        print(f"materialized {rows} rows of {view}")
    return 0


def register(registry: PluginRegistry) -> None:
    registry.add_settings(StreamsSettings)

    def setup_worker(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument("--app-id", help="Faust app id / consumer group (default STREAMREC_STREAMS_APP_ID)")
        parser.add_argument("--web-port", type=int, help="port of /metrics (default STREAMREC_STREAMS_WEB_PORT)")
        parser.add_argument(
            "--workers",
            type=_workers,
            default=1,
            help="worker processes in one consumer group, supervised; worker i serves /metrics on web port + i",
        )
        return _worker

    def setup_features(parser: argparse.ArgumentParser) -> CommandHandler:
        actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
        actions.required = True
        apply = actions.add_parser("apply", help="apply feature_repo/ to the Feast registry (never 'feast apply')")
        apply.add_argument("--dataset", help="take users/items tables from this prepared dataset (default: archive)")
        apply.add_argument("--materialize", action="store_true", help="load the batch views into the online store")
        return _features

    registry.add_command(
        "worker", "run the Faust streaming worker (Bloom filters, features, recommendations)", setup_worker
    )
    registry.add_command("features", "manage the Feast feature repository", setup_features)

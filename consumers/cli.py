"""CLI plugin: ``streamrec archive`` (the archiver), ``streamrec catalog-sync`` (the live catalog) and
``streamrec recs-client`` (the example client)."""

from __future__ import annotations

import argparse
import errno
import signal
from pathlib import Path
from types import FrameType

from consumers.settings import ConsumersSettings
from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.errors import ConfigError, DataError


def _archive(args: argparse.Namespace) -> int:
    from consumers.archiver import Archiver, RollPolicy
    from consumers.metrics import ArchiverMetrics
    from streamrec.security import refuse_placeholder_secrets
    from streamrec.settings import KafkaSettings, PathsSettings

    s = ConsumersSettings.load()
    root = PathsSettings.load().archive_root
    refuse_placeholder_secrets(KafkaSettings.load())  # before any connection
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True  # finish the current poll, write the buffer, commit, exit

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    metrics = ArchiverMetrics()
    if s.archiver_metrics_port:
        try:
            metrics.serve(s.archiver_metrics_port, s.archiver_metrics_host)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {s.archiver_metrics_host}:{s.archiver_metrics_port}: {exc.strerror}",
                source="STREAMREC_CONSUMERS_ARCHIVER_METRICS_PORT",
            ) from None
    archiver = Archiver(
        KafkaSettings.load(),
        root,
        group=s.archiver_group,
        policy=RollPolicy(s.roll_max_rows, s.roll_max_bytes, s.roll_max_age_s),
        topic=s.archiver_topic,
        poll_max_messages=s.poll_max_messages,
        poll_timeout_s=s.poll_timeout_s,
        session_timeout_s=s.session_timeout_s,
        metrics=metrics,
    )
    try:
        stats = archiver.run(lambda: stopping, idle_exit_s=args.idle_exit)
    except OSError as exc:
        # A full disk is the operator's to fix: one line naming the archive, not a traceback. Nothing was
        # committed for the buffer that failed, so a restart resumes from the last durable file.
        if exc.errno != errno.ENOSPC and "No space left on device" not in str(exc):
            raise
        raise DataError(f"No space left on device writing the archive {root}; nothing committed") from None
    print(f"archived {stats.events} events in {stats.files} files under {root}")
    return 0


def _catalog_sync(args: argparse.Namespace) -> int:
    from consumers.catalog_wiring import build_catalog_sync
    from consumers.metrics import CatalogSyncMetrics

    s = ConsumersSettings.load()
    export_root = Path(args.export_root)
    if not export_root.is_dir():
        raise ConfigError(f"export root {export_root} is not a directory", source="--export-root")
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True  # finish the current poll and its publishes, then exit

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    metrics = CatalogSyncMetrics()
    if s.catalog_sync_metrics_port:
        try:
            metrics.serve(s.catalog_sync_metrics_port, s.catalog_sync_metrics_host)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {s.catalog_sync_metrics_host}:{s.catalog_sync_metrics_port}: {exc.strerror}",
                source="STREAMREC_CONSUMERS_CATALOG_SYNC_METRICS_PORT",
            ) from None
    sync = build_catalog_sync(export_root, s, metrics)
    stats = sync.run(lambda: stopping, idle_exit_s=args.idle_exit)
    print(
        f"catalog sync: {stats.records} records read ({stats.rejected} rejected), {stats.published} live entries "
        f"published ({stats.embedded} embedded), {stats.feast_rows} Feast rows; exports {', '.join(stats.exports)}"
    )
    return 0


def _recs_client(args: argparse.Namespace) -> int:
    from consumers.recs_client import run

    return run(args.user, args.from_beginning, ConsumersSettings.load().recs_group, args.idle_exit)


def register(registry: PluginRegistry) -> None:
    registry.add_settings(ConsumersSettings)

    def setup_archive(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument(
            "--idle-exit", type=float, metavar="S", help="write, commit and exit after S seconds without messages"
        )
        return _archive

    def setup_catalog_sync(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument(
            "--export-root", required=True, metavar="DIR", help="model exports (the latest is published live)"
        )
        parser.add_argument(
            "--idle-exit", type=float, metavar="S", help="once replayed, exit after S seconds without a record"
        )
        return _catalog_sync

    def setup_recs_client(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument("--user", action="append", help="only these user ids (repeatable)")
        parser.add_argument("--from-beginning", action="store_true", help="read the topic from the start")
        parser.add_argument("--idle-exit", type=float, metavar="S", help="exit after S seconds without a change")
        return _recs_client

    registry.add_command(
        "archive", "archive interaction events to date-partitioned Parquet (offsets after fsync)", setup_archive
    )
    registry.add_command(
        "catalog-sync",
        "keep the live catalog (Redis) and Feast's item/user views current from the items and users topics",
        setup_catalog_sync,
    )
    registry.add_command(
        "recs-client", "example client: latest recommendations per user from the topic", setup_recs_client
    )

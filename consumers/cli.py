"""CLI plugin: ``streamrec archive`` (the archiver), ``streamrec catalog-sync`` (the live catalog) and
``streamrec recs-client`` (the example client)."""

from __future__ import annotations

import argparse
import errno
import signal
from pathlib import Path
from types import FrameType
from typing import Protocol

from consumers.settings import ConsumersSettings
from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.errors import ConfigError, DataError


class _StopOnSignal:
    """True once SIGTERM or SIGINT arrived: the command finishes its current poll (writes, commits), then exits."""

    def __init__(self) -> None:
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def __call__(self) -> bool:
        return self.stopping


class _Served(Protocol):
    def serve(self, port: int, host: str = "127.0.0.1") -> None: ...


def _serve_metrics(metrics: _Served, port: int, host: str, variable: str) -> None:
    """/metrics on ``host:port`` (0: none); a port that cannot be bound is one line naming the variable."""
    if not port:
        return
    try:
        metrics.serve(port, host)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}", source=variable) from None


def _archive(args: argparse.Namespace) -> int:
    from consumers.archiver import Archiver, RollPolicy
    from consumers.metrics import ArchiverMetrics
    from streamrec.security import refuse_placeholder_secrets
    from streamrec.settings import KafkaSettings, PathsSettings

    s = ConsumersSettings.load()
    root = PathsSettings.load().archive_root
    refuse_placeholder_secrets(KafkaSettings.load())  # before any connection
    stopping = _StopOnSignal()
    metrics = ArchiverMetrics()
    _serve_metrics(
        metrics, s.archiver_metrics_port, s.archiver_metrics_host, "STREAMREC_CONSUMERS_ARCHIVER_METRICS_PORT"
    )
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
        stats = archiver.run(stopping, idle_exit_s=args.idle_exit)
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
    stopping = _StopOnSignal()
    metrics = CatalogSyncMetrics()
    _serve_metrics(
        metrics,
        s.catalog_sync_metrics_port,
        s.catalog_sync_metrics_host,
        "STREAMREC_CONSUMERS_CATALOG_SYNC_METRICS_PORT",
    )
    sync = build_catalog_sync(export_root, s, metrics)
    stats = sync.run(stopping, idle_exit_s=args.idle_exit)
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

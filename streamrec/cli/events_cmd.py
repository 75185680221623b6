"""``streamrec produce``, ``streamrec recs`` and ``streamrec replay``: events in, recommendations out."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import pandas as pd
from tqdm import tqdm

from streamrec.archive import read_interactions
from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.client.consumer import RecommendationConsumer
from streamrec.client.producer import InteractionProducer
from streamrec.errors import ConfigError, DataError, InvalidEventError
from streamrec.schemas.codec import validate_interaction
from streamrec.schemas.events import format_timestamp
from streamrec.settings import KafkaSettings, PathsSettings


def _check_source(source: str) -> None:
    # Checked before any Kafka client exists, so a bad path is one line and never a broker connection error.
    if source != "-" and not Path(source).is_file():
        raise ConfigError(f"no such file: {source}", source="produce FILE")


def _lines(source: str) -> Iterator[tuple[int, str]]:
    _check_source(source)
    handle: TextIO = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line
    finally:
        if handle is not sys.stdin:
            handle.close()


def _produce(args: argparse.Namespace) -> int:
    sent = skipped = 0
    _check_source(args.file)
    # The producer starts with the first valid event: a file whose first line is bad is answered in one line,
    # without a Kafka client (whose connection log would add lines when no broker runs).
    producer: InteractionProducer | None = None
    with contextlib.ExitStack() as opened:
        for number, line in _lines(args.file):
            try:
                event = validate_interaction(json.loads(line))
            except json.JSONDecodeError as exc:
                error = InvalidEventError("<payload>", f"not valid JSON: {exc.msg}")
            except InvalidEventError as exc:
                error = exc
            else:
                if producer is None:
                    producer = opened.enter_context(InteractionProducer(KafkaSettings.load(), topic=args.topic))
                producer.send(event)
                sent += 1
                continue
            if not args.skip_invalid:
                raise InvalidEventError(f"line {number}: {error.field}", f"{error.reason} ({sent} sent before it)")
            skipped += 1
            print(f"line {number}: {error} (skipped)", file=sys.stderr)
    print(
        f"sent {sent} events to {args.topic or KafkaSettings.load().interactions_topic}"
        + (f"; skipped {skipped} invalid lines" if skipped else "")
    )
    return 0


def _recs(args: argparse.Namespace) -> int:
    users = set(args.user) if args.user else None
    idle_deadline = time.monotonic() + args.timeout
    with RecommendationConsumer(KafkaSettings.load(), from_beginning=args.from_beginning, user_ids=users) as cons:
        while args.follow or time.monotonic() < idle_deadline:
            rec = cons.poll(0.5)
            if rec is None:
                continue
            print(rec.model_dump_json(), flush=True)
            idle_deadline = time.monotonic() + args.timeout
    return 0


def archive_messages(frame: pd.DataFrame, new_ids: bool = False) -> Iterator[tuple[bytes, bytes, int]]:
    """Archive rows as (key, JSON value, epoch ms): the wire form of the interaction contract."""
    timestamps = pd.to_datetime(frame["timestamp"], utc=True)
    epoch_ms = (timestamps.astype("int64") // 1_000_000).to_numpy()
    locales = frame["locale"] if "locale" in frame.columns else pd.Series([None] * len(frame))
    for row, ts_ms, ts, locale in zip(frame.itertuples(index=False), epoch_ms, timestamps, locales, strict=True):
        value = {
            "event_id": str(uuid.uuid4()) if new_ids else row.event_id,
            "user_id": row.user_id,
            "item_id": row.item_id,
            "event_type": row.event_type,
            "timestamp": format_timestamp(ts.to_pydatetime()),
            "context": {
                "device": row.device,
                "session_id": row.session_id,
                "locale": locale if isinstance(locale, str) else None,
            },
            "schema_version": 1,
        }
        yield row.user_id.encode(), json.dumps(value, separators=(",", ":")).encode(), int(ts_ms)


def retime(frame: pd.DataFrame, speed: float | None, start: datetime) -> pd.DataFrame:
    """Shift timestamps so the first event is at ``start``; gaps shrink by ``speed``.

    ``speed`` None (``--speed max``): the events are produced at once, so they are packed 1 ms apart and end at
    ``start`` instead: none lies in the future, where it would outrank the live events that follow the replay
    (recent items and windows are ordered by event time).
    """
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    offset = ts - ts.iloc[0]
    frame = frame.copy()
    if speed is None:
        # --speed max: keep order, spread events 1 ms apart so windows and ordering stay meaningful.
        frame["timestamp"] = pd.Timestamp(start) - pd.to_timedelta(range(len(frame) - 1, -1, -1), unit="ms")
    else:
        frame["timestamp"] = pd.Timestamp(start) + offset / speed
    return frame


def _replay(args: argparse.Namespace) -> int:
    paths = PathsSettings.load()
    root = Path(args.data) if args.data else paths.dataset_root(args.dataset)
    if not root.is_dir():
        raise DataError(
            f"dataset {args.dataset!r} is not prepared at {root}; run: streamrec data prepare --dataset {args.dataset}"
        )
    frame = read_interactions(root)
    if args.limit:
        frame = frame.iloc[: args.limit]
    speed = None if args.speed == "max" else float(args.speed)
    if speed is not None and speed <= 0:
        raise ConfigError("must be a positive number or 'max'", source="--speed")
    if args.retime:
        frame = retime(frame, speed, datetime.now(UTC))
    original = pd.to_datetime(frame["timestamp"], utc=True)
    first_ms = int(original.iloc[0].value // 1_000_000) if len(frame) else 0
    start = time.monotonic()
    with InteractionProducer(KafkaSettings.load(), topic=args.topic) as producer:
        bar = tqdm(total=len(frame), unit="ev", desc=f"replay {args.dataset}", file=sys.stderr, mininterval=0.5)
        for n, (key, value, ts_ms) in enumerate(archive_messages(frame, new_ids=args.new_ids)):
            if speed is not None:
                due = (ts_ms - first_ms) / 1000.0 / (1.0 if args.retime else speed)
                delay = due - (time.monotonic() - start)
                if delay > 0:
                    producer.poll(0)
                    time.sleep(delay)
            producer.send_raw(key, value, ts_ms if not args.retime else None)
            if n % 1000 == 999:
                bar.update(1000)
        bar.update(len(frame) % 1000)
        bar.close()
    elapsed = time.monotonic() - start
    print(f"replayed {len(frame)} events from {root} in {elapsed:.1f}s ({len(frame) / max(elapsed, 1e-9):,.0f}/s)")
    return 0


def register(registry: PluginRegistry) -> None:
    def setup_produce(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument("file", help="JSON-lines file of interaction events, or - for stdin")
        parser.add_argument("--topic", help="override the interactions topic")
        parser.add_argument("--skip-invalid", action="store_true", help="report invalid lines and go on")
        return _produce

    def setup_recs(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument("--follow", "-f", action="store_true", help="keep reading until Ctrl-C")
        parser.add_argument("--user", action="append", help="only these user ids (repeatable)")
        parser.add_argument("--from-beginning", action="store_true", help="read the topic from the start")
        parser.add_argument("--timeout", type=float, default=5.0, help="without --follow: stop after idle seconds")
        return _recs

    def setup_replay(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument("--dataset", default="ml-100k", help="prepared dataset name (ml-100k, synthetic, ...)")
        parser.add_argument("--data", help="dataset root directory (overrides --dataset's location)")
        parser.add_argument("--speed", default="max", help="N times real time, or 'max' (default)")
        parser.add_argument("--limit", type=int, default=0, help="replay only the first N events")
        parser.add_argument("--retime", action="store_true", help="timestamps from now on (--speed max: ending now)")
        parser.add_argument("--new-ids", action="store_true", help="fresh event ids (else dataset ids, deduped)")
        parser.add_argument("--topic", help="override the interactions topic")
        return _replay

    registry.add_command("produce", "produce interaction events from JSON lines", setup_produce)
    registry.add_command("recs", "print recommendation messages from the recommendations topic", setup_recs)
    registry.add_command("replay", "replay a prepared dataset's events into Kafka in timestamp order", setup_replay)

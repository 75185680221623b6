"""How big the worker's user and item states grow over a run, through its own planning code. Not a test.

Simulates a key distribution like the soak's (ML-100K: 943 users, 1,682 items with a skewed popularity,
6 source partitions) in batches, with ``streams.batch.plan_user`` / ``plan_item`` and the state codecs (no
Kafka, no Faust), and prints the median and largest encoded state every ``--every`` batches: the bytes each
changelog write carries as the de-duplication ids and the offset ranges fill up to their bounds.

Usage: .venv/bin/python bench/streams_state_growth.py [--batches 2001] [--batch 300]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.batch import bundle_forwards, group_bundles_by_item, item_partition, plan_item, plan_user, spans_by_item
from streams.settings import StreamsSettings
from streams.state import DedupeLimits, EventRecord, ItemState, UserState, dump_item, dump_user, runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2001)
    parser.add_argument("--batch", type=int, default=300, help="events per batch")
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--every", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(1)
    defaults = StreamsSettings()
    limits = DedupeLimits(defaults.dedupe_max_events, max(defaults.dedupe_window_s // 60, 1))
    users: dict[str, UserState] = {}
    items: dict[str, ItemState] = {}
    offsets = [0] * args.partitions
    weights = [1 / (k + 1) ** 0.8 for k in range(args.items)]
    clock_ms = int(time.time() * 1000)
    for b in range(args.batches):
        batch = []
        for _ in range(args.batch):
            user = f"u{rng.randrange(args.users)}"
            partition = item_partition(user, args.partitions)  # keyed by user, as the producer does
            item = f"i{rng.choices(range(args.items), weights)[0]}"
            batch.append(EventRecord(uuid.uuid4().int, user, item, rng.randrange(5), clock_ms, partition,
                                     offsets[partition], clock_ms))  # fmt: skip
            offsets[partition] += 1
            clock_ms += 1
        read: dict[int, list[int]] = {}
        for ev in batch:
            read.setdefault(ev.partition, []).append(ev.offset)
        spans = {p: runs(o) for p, o in read.items()}
        by_user: dict[str, list[EventRecord]] = {}
        for ev in batch:
            by_user.setdefault(ev.user_id, []).append(ev)
        forwards: list[EventRecord] = []
        for user, events in by_user.items():
            users[user], effect = plan_user(users.get(user), events, lambda _: "c", limits, spans)
            forwards += effect.forwards
        bundles = [b for bs in bundle_forwards(forwards, args.partitions, spans).values() for b in bs]
        item_spans = spans_by_item(bundles)
        for item, entries in group_bundles_by_item(bundles).items():
            items[item], _ = plan_item(items.get(item), entries, item_spans.get(item, ()))
        if b % args.every == 0 or b == args.batches - 1:
            u = sorted(len(dump_user(s)) for s in users.values())
            i = sorted(len(dump_item(s)) for s in items.values())
            done = (b + 1) * args.batch
            print(f"after {done:>9,} events: user state median {u[len(u) // 2]:>6,} B, largest {u[-1]:>6,} B; "
                  f"item state median {i[len(i) // 2]:>6,} B, largest {i[-1]:>6,} B", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

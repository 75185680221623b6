"""Shared set-up of the serving benchmarks: a Feast repository on the stack's Valkey with the user stream view
(and, for the cache ablation, an item feature view), filled from an export so every lookup hits real rows."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.feast_config import write_minimal_repo_config
from streamrec.features import (
    FEAST_ITEM_ENTITY_KEY,
    FEAST_ITEM_PUSH_SOURCE,
    FEAST_USER_ENTITY_KEY,
    FEAST_USER_PUSH_SOURCE,
    FEAST_USER_STREAM_VIEW,
    USER_COUNT_FEATURES,
)

ITEM_VIEW = "bench_item_features"


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
    except OSError:
        gpu = ""
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "gpu": gpu or None,
        "cores": len(os.sched_getaffinity(0)),
        "load_avg": load,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def feast_repo(root: Path, redis_url: str, project: str, export: Any, with_items: bool = False) -> Path:
    """Create and apply a repository under ``root``; push a stream row for every user of the export."""
    import pandas as pd  # here, not at the top: the load generator runs where pandas and Feast are absent
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.types import Array, Float32, Int64, String

    root = root.resolve()  # the yaml's registry path must not depend on the working directory
    write_minimal_repo_config(root, project, redis_url)
    user = Entity(name="user", join_keys=[FEAST_USER_ENTITY_KEY], value_type=ValueType.STRING)
    user_push = PushSource(
        name=FEAST_USER_PUSH_SOURCE,
        batch_source=FileSource(name="u_off", path=str(root / "u.parquet"), timestamp_field="ts"),
    )
    user_view = FeatureView(
        name=FEAST_USER_STREAM_VIEW, entities=[user], ttl=timedelta(days=7), online=True, source=user_push,
        schema=[
            *(Field(name=n, dtype=Int64) for n in USER_COUNT_FEATURES), Field(name="recent_items", dtype=Array(String))
        ],
    )  # fmt: skip
    objects: list[Any] = [user, user_push, user_view]
    if with_items:
        item = Entity(name="item", join_keys=[FEAST_ITEM_ENTITY_KEY], value_type=ValueType.STRING)
        item_push = PushSource(
            name=FEAST_ITEM_PUSH_SOURCE,
            batch_source=FileSource(name="i_off", path=str(root / "i.parquet"), timestamp_field="ts"),
        )
        item_view = FeatureView(
            name=ITEM_VIEW, entities=[item], ttl=timedelta(days=365), online=True, source=item_push,
            schema=[Field(name="category_idx", dtype=Int64), Field(name="content", dtype=Array(Float32))],
        )  # fmt: skip
        objects += [item, item_push, item_view]
    store = FeatureStore(repo_path=str(root))
    store.apply(objects)
    rng = np.random.default_rng(0)
    users, items = export.id_maps.user_ids, export.id_maps.item_ids
    now = datetime.now(UTC)
    rows = {
        FEAST_USER_ENTITY_KEY: users,
        "recent_items": [list(rng.choice(items, size=20, replace=False)) for _ in users],
        "ts": [now] * len(users),
    }
    for name in USER_COUNT_FEATURES:
        rows[name] = rng.poisson(3, size=len(users)).tolist()
    store.write_to_online_store(FEAST_USER_STREAM_VIEW, pd.DataFrame(rows))
    if with_items:
        arrays = export.items
        content = np.concatenate([arrays.dense, arrays.text, arrays.image], axis=1)
        frame = pd.DataFrame(
            {
                FEAST_ITEM_ENTITY_KEY: items,
                "category_idx": arrays.category_idx.tolist(),
                "content": [list(map(float, row)) for row in content],
                "ts": [now] * len(items),
            }
        )
        store.write_to_online_store(ITEM_VIEW, frame)
    return root


def percentiles(values_ms: list[float]) -> dict[str, float]:
    a = np.asarray(values_ms)
    if len(a) == 0:
        return {}
    return {
        "n": len(a),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "max": round(float(a.max()), 3),
        "mean": round(float(a.mean()), 3),
    }


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def dump(result: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")

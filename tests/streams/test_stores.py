"""The worker's stores against the real server: Bloom filters (both backends) and both Feast write paths."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamrec.bloom import AsyncSeenItemStore
from streamrec.features import (
    FEAST_ITEM_ENTITY_KEY,
    FEAST_ITEM_PUSH_SOURCE,
    FEAST_ITEM_STREAM_VIEW,
    FEAST_USER_ENTITY_KEY,
    FEAST_USER_PUSH_SOURCE,
    FEAST_USER_STREAM_VIEW,
)
from streamrec.settings import BloomSettings, FeastSettings, PathsSettings, RedisSettings
from streams.feast_schema import ITEM_STREAM_FIELDS, TIMESTAMP_FIELD, USER_STREAM_FIELDS, item_row, user_row
from streams.feast_store import FeastDirectWrite, FeastPush, apply_repo, open_store
from streams.state import ItemFeatures, UserFeatures
from tests.conftest import StackHandle

USERS, PER_USER, PROBES = 10, 1000, 2000


@pytest.mark.parametrize("backend", ["redisbloom", "bitmap"])
def test_bloom_10k_inserts_no_false_negatives_and_fpr_near_the_setting(
    stack: StackHandle, unique_id: str, backend: str
) -> None:
    settings = BloomSettings(backend=backend)  # defaults: capacity 1000, error rate 0.01

    async def run() -> tuple[list[bool], list[bool], int]:
        store = await AsyncSeenItemStore.connect(RedisSettings.load(), settings)
        assert store.backend.name == backend
        users = [f"bf{unique_id}{backend}-{u}" for u in range(USERS)]
        inserted = {u: [f"item-{u}-{n}" for n in range(PER_USER)] for u in users}
        for start in range(0, PER_USER, 250):  # batches, as the worker writes them
            await store.add({u: items[start : start + 250] for u, items in inserted.items()})
        present, absent = [], []
        for user, items in inserted.items():
            present += await store.contains(user, items)
            absent += await store.contains(user, [f"never-{user}-{n}" for n in range(PROBES)])
        ttl = int(await store.client.ttl(store.backend.key(users[0])))
        await store.close()
        return present, absent, ttl

    present, absent, ttl = asyncio.run(run())
    assert len(present) == USERS * PER_USER == 10_000
    assert all(present), f"{present.count(False)} false negatives"
    fpr = sum(absent) / len(absent)
    assert settings.error_rate / 4 <= fpr <= 2 * settings.error_rate, f"false-positive rate {fpr:.4f}"
    assert 0 < ttl <= settings.ttl_seconds


def test_both_feast_write_paths_store_what_was_written(stack: StackHandle, unique_id: str, tmp_path: Path) -> None:
    feast = FeastSettings(project=f"p{unique_id}", registry=tmp_path / "registry.db")
    apply_repo(feast, RedisSettings.load(), PathsSettings(archive_root=tmp_path / "archive"))
    store = open_store(feast, RedisSettings.load())
    now = datetime.now(UTC)
    users = {
        f"fu{n}": user_row(
            f"fu{n}",
            UserFeatures(tuple(range(n, n + 15)), tuple(f"i{k}" for k in range(n % 4)), f"c{n}" if n % 2 else None, n),
            now,
        )
        for n in range(20)
    }
    items = {
        f"fi{n}": item_row(f"fi{n}", ItemFeatures(tuple(range(8)), n / 7, 1.5 + n, 2.0, n), now) for n in range(20)
    }
    direct, push = FeastDirectWrite(store, [FEAST_USER_PUSH_SOURCE, FEAST_ITEM_PUSH_SOURCE]), FeastPush(store)
    ids = sorted(users)
    direct(FEAST_USER_PUSH_SOURCE, [users[i] for i in ids[:10]])
    push(FEAST_USER_PUSH_SOURCE, [users[i] for i in ids[10:]])
    direct(FEAST_ITEM_PUSH_SOURCE, list(items.values())[:10])
    push(FEAST_ITEM_PUSH_SOURCE, list(items.values())[10:])

    for view, key, fields, rows in (
        (FEAST_USER_STREAM_VIEW, FEAST_USER_ENTITY_KEY, USER_STREAM_FIELDS, users),
        (FEAST_ITEM_STREAM_VIEW, FEAST_ITEM_ENTITY_KEY, ITEM_STREAM_FIELDS, items),
    ):
        got = store.get_online_features(
            features=[f"{view}:{f}" for f in fields], entity_rows=[{key: i} for i in sorted(rows)]
        ).to_dict()
        for n, entity in enumerate(got[key]):
            expected = {f: v for f, v in rows[entity].items() if f not in (key, TIMESTAMP_FIELD)}
            stored = {f: got[f][n] for f in fields}
            assert stored == expected, entity

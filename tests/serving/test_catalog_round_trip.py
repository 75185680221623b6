"""Your own catalog end to end without dataset preparation: the event archive plus a catalog snapshot -> full
training -> the serving pipeline recommends exactly the snapshot's items (no others), and an item the live
catalog then marks unavailable is no longer served."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

from serving.pipeline.config import StageConfig
from serving.pipeline.reference import ReferencePipeline
from streamrec import artifacts as art
from streamrec.archive import INTERACTIONS_DIR, read_items
from streamrec.catalog.live import LiveCatalogWriter, LiveItem, LiveKeys
from streamrec.catalog.models import CatalogItem, ItemRecord
from streamrec.catalog.settings import CatalogSettings
from streamrec.catalog.snapshot import write_snapshot
from streamrec.catalog.state import CatalogState
from streamrec.pipeline_client import RecommendRequest
from tests.conftest import StackHandle
from tests.serving.conftest import make_config, trainer_settings
from trainer.train.full import run_full

DROPPED = 20  # items of the prepared dataset left out of the shop's catalog


def test_snapshot_training_and_serving_round_trip(
    stack: StackHandle, data_root: Path, tmp_path: Path, unique_id: str
) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(data_root / INTERACTIONS_DIR, archive / INTERACTIONS_DIR)  # as the archiver writes it
    items = read_items(data_root)
    catalog: CatalogState[ItemRecord] = CatalogState()
    now = datetime.now(UTC)
    for row in items.iloc[DROPPED:].itertuples():
        catalog.apply(
            CatalogItem(item_id=row.item_id, title=row.text, category=row.category, price=row.price, updated_at=now)
        )
    write_snapshot(archive, catalog, CatalogState(), now=now)
    summary = run_full(archive, tmp_path / "exports", trainer_settings(tmp_path, seed=3))
    assert summary.version is not None
    export_dir = art.current_dir(tmp_path / "exports")
    shop = set(items["item_id"].iloc[DROPPED:])
    assert set(art.load_id_maps(export_dir).item_ids) == shop

    prefix = f"roundtrip-{unique_id}"
    config = make_config(export_dir, stack.redis.effective_url, None)
    config = StageConfig(
        **{**config.model_dump(), "catalog": CatalogSettings(live_prefix=prefix).model_dump()},
    )
    pipeline = ReferencePipeline(config)
    users = art.load_id_maps(export_dir).user_ids[:5]
    answers = {u: pipeline.recommend(RecommendRequest(user_id=u, k=10)).items for u in users}
    assert all(len(a) == 10 and set(a) <= shop for a in answers.values()), answers

    # The shop takes the first user's top item off sale: the live catalog masks it in the running pipeline.
    top = answers[users[0]][0]
    client = redis.Redis.from_url(stack.redis.effective_url)
    keys = LiveKeys.for_version(export_dir.name, prefix)
    index = art.load_id_maps(export_dir).item_index()[top]
    LiveCatalogWriter(client, keys, len(shop)).publish([LiveItem(top, index, available=False, updated_ms=1)])
    try:
        deadline = time.monotonic() + 5.0  # the follower applies the change on its next read
        while time.monotonic() < deadline and top in pipeline.recommend(RecommendRequest(user_id=users[0], k=10)).items:
            time.sleep(0.1)
        assert top not in pipeline.recommend(RecommendRequest(user_id=users[0], k=10)).items
    finally:
        client.delete(keys.state, keys.changes, keys.index, keys.next_index)
        client.close()

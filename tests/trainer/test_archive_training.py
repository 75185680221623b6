"""Training from the production layout: the event archive plus catalog snapshots, no dataset preparation."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from consumers.catalog_embed import ContentEmbedder
from streamrec import artifacts as art
from streamrec.archive import INTERACTIONS_DIR, read_items, read_users
from streamrec.catalog.models import CatalogItem, ItemRecord, UserProfile, UserRecord
from streamrec.catalog.settings import CatalogSettings
from streamrec.catalog.snapshot import write_snapshot
from streamrec.catalog.state import CatalogState
from streamrec.errors import DataError
from streamrec.features import MODEL_IMAGE_EMBEDDING, MODEL_ITEM_CATEGORY, MODEL_ITEM_PRICE, MODEL_TEXT_EMBEDDING
from trainer.data.loading import catalog_root, load_dataset
from trainer.embeddings.content import encode_texts
from trainer.export.index import brute_force, read_index, search
from trainer.settings import TrainerSettings
from trainer.train.finetune import run_finetune
from trainer.train.full import run_full

N_NEW = 12
LAST_DAY = date(2026, 11, 6)


def _snapshot(root: Path, items: pd.DataFrame, users: pd.DataFrame, now: datetime) -> Path:
    item_state: CatalogState[ItemRecord] = CatalogState()
    for row in items.itertuples():
        item_state.apply(
            CatalogItem(item_id=row.item_id, title=row.text, category=row.category, price=row.price, updated_at=now)
        )
    user_state: CatalogState[UserRecord] = CatalogState()
    fields = [c for c in users.columns if c.startswith("profile_")]
    for record in users.to_dict("records"):
        attributes = {f.removeprefix("profile_"): str(record[f]) for f in fields}
        user_state.apply(UserProfile(user_id=record["user_id"], attributes=attributes, updated_at=now))
    return write_snapshot(root, item_state, user_state, now=now).path


@pytest.fixture(scope="module")
def archive(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """An archive as the archiver writes it (interactions only) with a catalog snapshot lacking N_NEW items."""
    root = tmp_path_factory.mktemp("archive")
    shutil.copytree(tiny_root / INTERACTIONS_DIR, root / INTERACTIONS_DIR)
    items, users = read_items(tiny_root), read_users(tiny_root)
    _snapshot(root, items.iloc[:-N_NEW], users, datetime(2026, 11, 5, 23, tzinfo=UTC))
    return root, items, users


def test_an_archive_without_item_table_or_snapshot_is_refused_with_one_line(tmp_path: Path, tiny_root: Path) -> None:
    shutil.copytree(tiny_root / INTERACTIONS_DIR, tmp_path / INTERACTIONS_DIR)
    with pytest.raises(DataError, match="neither items.parquet nor a complete catalog snapshot"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="no complete catalog snapshot"):
        catalog_root(tiny_root, "latest")


def test_full_training_reads_the_archive_and_the_newest_snapshot_then_finetune_adds_new_items(
    archive: tuple[Path, pd.DataFrame, pd.DataFrame], settings: TrainerSettings, tmp_path: Path
) -> None:
    root, items, users = archive
    export_root = tmp_path / "exports"
    full = run_full(root, export_root, settings, end=date(2026, 11, 5))
    parent = art.current_dir(export_root)
    parent_meta = art.check_version_dir(parent)
    known = items["item_id"].iloc[:-N_NEW].tolist()
    assert art.load_id_maps(parent).item_ids == known  # the snapshot's items, nothing prepared
    assert parent_meta.feature_spec.profile_fields == sorted(c for c in users.columns if c.startswith("profile_"))
    assert parent_meta.feature_spec.profile_fields  # profiles came through the snapshot's users
    assert any("catalog:" in note and "version=" in note for note in full.notes)

    # The shop adds items; the next snapshot lists them and the daily job embeds them from content alone.
    _snapshot(root, items, users, datetime(2026, 11, 6, 23, tzinfo=UTC))
    promote_always = settings.model_copy(update={"promote_tolerance": 1.0})
    summary = run_finetune(root, export_root, promote_always, day=LAST_DAY)
    assert summary.promoted and summary.version
    child = art.version_dir(export_root, summary.version)
    meta = art.check_version_dir(child)
    maps = art.load_id_maps(child)
    new_ids = items["item_id"].iloc[-N_NEW:].tolist()
    assert maps.item_ids == known + sorted(new_ids)
    arrays = art.load_item_arrays(child)
    parent_arrays = art.load_item_arrays(parent)
    # Known items keep their vectors (item tower frozen) ...
    np.testing.assert_array_equal(arrays.embeddings[: len(known)], parent_arrays.embeddings)
    # ... and new ones are what the parent's exported content encoder gives for their content, their retrieval
    # rows borrowed from their content neighbours exactly as the catalog sync borrows them for the same items.
    encoder = torch.jit.load(str(parent / art.CONTENT_ENCODER_FILE))
    rows = items.set_index("item_id").loc[sorted(new_ids)]
    raw_text, _ = encode_texts(rows["text"].tolist(), settings)
    categories = [maps.categories.index(c) if c in maps.categories else 0 for c in rows["category"]]
    with torch.no_grad():
        out = encoder(
            {
                MODEL_ITEM_CATEGORY: torch.tensor(categories),
                MODEL_ITEM_PRICE: torch.tensor(rows["price"].to_numpy(np.float32)),
                MODEL_TEXT_EMBEDDING: torch.as_tensor(raw_text),
                MODEL_IMAGE_EMBEDDING: torch.zeros((len(rows), 0)),
            }
        )
    np.testing.assert_allclose(arrays.text[len(known) :], out["item_text"].numpy(), atol=1e-5)
    sync = ContentEmbedder(parent, neighbours=CatalogSettings().new_item_neighbours)
    live = sync.encode(rows["text"].tolist(), categories, rows["price"].tolist(), [None] * len(rows))
    np.testing.assert_allclose(arrays.embeddings[len(known) :], np.stack([v.embedding for v in live]), atol=1e-4)
    assert not np.allclose(arrays.embeddings[len(known) :], out["item_embedding"].numpy(), atol=1e-3)
    # The new items are in the index: it holds every row and answers like brute force over them.
    index = read_index(str(child / meta.index.file))
    assert index.ntotal == len(known) + N_NEW
    queries = arrays.embeddings[len(known) :]
    _, found = search(index, queries, 5)
    np.testing.assert_array_equal(found, brute_force(arrays.embeddings, queries, 5)[1])
    assert np.isin(np.arange(len(known) + 1, len(known) + N_NEW + 1), found).any()  # new items are retrieved
    assert any(f"{N_NEW} items new since the parent" in note for note in summary.notes)

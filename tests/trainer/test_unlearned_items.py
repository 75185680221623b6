"""Full training exports an item without events in its window the way the catalog sync embeds an item added
after training: its retrieval row borrowed from its content neighbours among the trained items."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from streamrec import artifacts as art
from streamrec.content_neighbours import DEFAULT_NEIGHBOURS, ContentNeighbours
from trainer.data import synthetic
from trainer.settings import TrainerSettings
from trainer.train.full import run_full


def test_items_without_events_are_exported_with_their_content_neighbours_embedding(
    tmp_path: Path, settings: TrainerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = synthetic.SyntheticConfig.preset("tiny", seed=3).with_sizes(users=300, events=4_000, days=4)
    synthetic.prepare(tmp_path / "data", config.with_new_items(8))  # launched on the last day
    before_launch = date(2026, 11, 3)
    run_full(tmp_path / "data", tmp_path / "borrowed", settings, end=before_launch)
    monkeypatch.setenv("STREAMREC_CATALOG_NEW_ITEM_NEIGHBOURS", "0")
    run_full(tmp_path / "data", tmp_path / "tower", settings, end=before_launch)
    borrowed = art.load_item_arrays(art.current_dir(tmp_path / "borrowed"))
    tower = art.load_item_arrays(art.current_dir(tmp_path / "tower"))

    unlearned = borrowed.popularity == 0
    assert unlearned.sum() >= 8
    np.testing.assert_array_equal(borrowed.embeddings[~unlearned], tower.embeddings[~unlearned])  # same training
    neighbours = ContentNeighbours.of_learned(
        borrowed.text, borrowed.image, borrowed.embeddings, ~unlearned, k=DEFAULT_NEIGHBOURS
    )
    assert neighbours is not None
    want = neighbours.embed(borrowed.text[unlearned], borrowed.image[unlearned], fallback=tower.embeddings[unlearned])
    np.testing.assert_allclose(borrowed.embeddings[unlearned], want, atol=1e-5)
    assert not np.allclose(borrowed.embeddings[unlearned], tower.embeddings[unlearned], atol=1e-3)

"""The catalog sync's image path: an export trained with a (tiny) CLIP embeds a new item's picture exactly as
training embedded the same picture, and an unreadable picture is counted while the item still gets vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consumers.catalog_embed import ContentEmbedder
from streamrec import artifacts as art
from streamrec.archive import read_items
from tests.tiny_models import build_tiny_clip


@pytest.fixture(scope="module")
def clip_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.serving.conftest import trainer_settings
    from trainer.data import synthetic
    from trainer.train.full import run_full

    tmp = tmp_path_factory.mktemp("catalog-clip")
    data = tmp / "data"
    config = synthetic.SyntheticConfig.preset("tiny", seed=5).with_sizes(users=120, items=40, events=1_200, days=3)
    synthetic.prepare(data, config)
    clip = build_tiny_clip(tmp / "tiny-clip")
    settings = trainer_settings(tmp, seed=5).model_copy(update={"clip_model": clip, "image_dim": 4})
    summary = run_full(data, tmp / "exports", settings)
    assert summary.version is not None
    return data, art.current_dir(tmp / "exports")


def test_a_new_items_picture_is_embedded_as_training_embedded_the_same_picture(
    clip_export: tuple[Path, Path], tmp_path: Path
) -> None:
    data, export_dir = clip_export
    meta = art.load_metadata(export_dir)
    assert meta.feature_spec.image_model and meta.feature_spec.image_embedding_dim > 0
    items = read_items(data)
    row = items.iloc[3]
    picture = tmp_path / "item.png"
    picture.write_bytes(bytes(row["image_png"]))
    index = art.load_id_maps(export_dir).item_ids.index(str(row["item_id"]))
    trained = art.load_item_arrays(export_dir).image[index]

    embedder = ContentEmbedder(export_dir)
    [with_picture, unreadable] = embedder.encode(
        ["a new item", "another new item"], [1, 1], [10.0, 10.0], [str(picture), str(tmp_path / "missing.png")]
    )
    assert trained.shape == with_picture.image.shape == (meta.feature_spec.image_dim,)
    assert np.abs(trained).sum() > 0
    np.testing.assert_allclose(with_picture.image, trained, atol=1e-4)
    assert embedder.image_failures == 1
    no_picture = embedder.encode(["another new item"], [1], [10.0], [None])[0]
    np.testing.assert_allclose(unreadable.image, no_picture.image, atol=1e-6)  # embedded from its text alone
    np.testing.assert_allclose(unreadable.embedding, no_picture.embedding, atol=1e-6)

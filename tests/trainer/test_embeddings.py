"""Content embeddings: bundled MiniLM offline, a tiny local CLIP for images, PCA, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.errors import ConfigError
from tests.tiny_models import build_tiny_clip
from trainer.data.loading import Dataset
from trainer.embeddings.content import build_content_embeddings, encode_texts, pca_reduce
from trainer.settings import TrainerSettings


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def test_text_embeddings_are_cached_by_content(settings: TrainerSettings, cache_dir: Path) -> None:
    texts = ["red wool scarf", "steel kitchen knife", "red wool scarf"]
    first, name = encode_texts(texts, settings)
    assert first.shape == (3, 384) and "MiniLM" in name
    np.testing.assert_allclose(first[0], first[2], atol=1e-6)
    assert float(first[0] @ first[1]) < 0.9
    cached = list((cache_dir / "embeddings").glob("*.npy"))
    again, _ = encode_texts(texts, settings)
    np.testing.assert_array_equal(first, again)
    assert sorted((cache_dir / "embeddings").glob("*.npy")) == sorted(cached)


def test_images_skipped_without_clip_and_metadata_says_so(tiny_content: object) -> None:
    content = tiny_content
    assert content.image.shape[1] == 0 and content.image_model is None  # type: ignore[attr-defined]
    assert any("no CLIP model configured" in n for n in content.notes)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_image_embeddings_with_a_tiny_local_clip(
    tiny_dataset: Dataset, settings: TrainerSettings, tiny_clip: str
) -> None:
    with_clip = settings.model_copy(update={"clip_model": tiny_clip})
    content = build_content_embeddings(tiny_dataset.catalog.texts[:40], tiny_dataset.catalog.images[:40], with_clip)
    assert content.image.shape == (41, 4) and content.image_model == tiny_clip
    assert np.all(content.image[0] == 0) and np.abs(content.image[1:]).sum() > 0


def test_missing_clip_model_is_a_config_error(tiny_dataset: Dataset, settings: TrainerSettings, tmp_path: Path) -> None:
    bad = settings.model_copy(update={"clip_model": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="cannot load CLIP model"):
        build_content_embeddings(tiny_dataset.catalog.texts[:3], tiny_dataset.catalog.images[:3], bad)


def test_pca_reduces_and_keeps_most_variance() -> None:
    rng = np.random.default_rng(0)
    low = rng.standard_normal((300, 4)) @ rng.standard_normal((4, 50))
    reduced = pca_reduce(low + 0.01 * rng.standard_normal((300, 50)), 4, seed=0)
    assert reduced.shape == (300, 4)
    # distances are preserved up to scale when the data has rank 4
    d_full = np.linalg.norm(low[:50, None] - low[None, :50], axis=2).ravel()
    d_red = np.linalg.norm(reduced[:50, None] - reduced[None, :50], axis=2).ravel()
    assert np.corrcoef(d_full, d_red)[0, 1] > 0.99

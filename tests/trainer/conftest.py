"""Fixtures of the trainer tests: a tiny synthetic dataset and small, fast settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.data import synthetic
from trainer.data.loading import Dataset, load_dataset
from trainer.embeddings.content import ContentEmbeddings, build_content_embeddings
from trainer.settings import TrainerSettings


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-synthetic")
    config = synthetic.SyntheticConfig.preset("tiny", seed=7).with_sizes(users=600, events=8_000, days=6)
    synthetic.prepare(root, config)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def settings(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainerSettings:
    return TrainerSettings(
        device="cpu",
        progress=False,
        retrieval_epochs=2,
        ranker_epochs=1,
        finetune_epochs=1,
        batch_size=256,
        embedding_dim=16,
        id_dim=16,
        text_dim=8,
        image_dim=4,
        cache_dir=cache_dir,
        checkpoint_dir=tmp_path_factory.mktemp("checkpoints"),
        num_threads=1,
    )


@pytest.fixture(scope="session")
def tiny_dataset(tiny_root: Path) -> Dataset:
    return load_dataset(tiny_root)


@pytest.fixture(scope="session")
def tiny_content(tiny_dataset: Dataset, settings: TrainerSettings) -> ContentEmbeddings:
    return build_content_embeddings(tiny_dataset.catalog.texts, tiny_dataset.catalog.images, settings)

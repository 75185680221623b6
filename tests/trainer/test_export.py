"""Tiny end to end: train -> export -> publish -> reload; TorchScript equals in-memory; index equals brute force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec import artifacts as art
from streamrec.errors import ArtifactError
from streamrec.features import (
    CONTENT_ENCODER_INPUTS,
    CONTENT_ENCODER_OUTPUTS,
    MODEL_CONTEXT_IDX,
    MODEL_IMAGE_EMBEDDING,
    MODEL_ITEM_CATEGORY,
    MODEL_ITEM_DENSE,
    MODEL_ITEM_EMBEDDING,
    MODEL_ITEM_PRICE,
    MODEL_ITEM_TEXT,
    MODEL_PROFILE_IDX,
    MODEL_RECENT_ITEMS,
    MODEL_TEXT_EMBEDDING,
    MODEL_USER_IDX,
    RANKER_INPUTS,
)
from trainer.data.loading import Dataset
from trainer.embeddings.content import ContentEmbeddings, encode_texts
from trainer.export.index import brute_force, build_index, read_index, search
from trainer.export.writer import load_trained
from trainer.models.inputs import ItemFeatures, RankerBatch, UserFeatures
from trainer.settings import TrainerSettings
from trainer.train.full import publish_models
from trainer.train.pipeline import TrainedModels, train_models


@pytest.fixture(scope="module")
def trained(tiny_dataset: Dataset, tiny_content: ContentEmbeddings, settings: TrainerSettings) -> TrainedModels:
    return train_models(tiny_dataset, np.arange(len(tiny_dataset.events)), tiny_content, settings)


@pytest.fixture(scope="module")
def export_root(
    trained: TrainedModels, tiny_dataset: Dataset, settings: TrainerSettings, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("exports")
    publish_models(root, trained, tiny_dataset, settings, kind="full", window=("2026-11-01", "2026-11-06"), metrics={})
    return root


def test_training_reports_progress_and_loss(trained: TrainedModels) -> None:
    summary = trained.summary()
    assert set(summary) == {"retrieval", "ranker"}
    assert summary["retrieval"]["examples_seen"] > 0 and np.isfinite(summary["retrieval"]["final_loss"])


def test_published_version_is_complete_and_current(export_root: Path, tiny_dataset: Dataset) -> None:
    version = art.read_current(export_root)
    assert art.list_versions(export_root) == [version]
    directory = art.version_dir(export_root, version)
    meta = art.check_version_dir(directory)
    assert meta.n_items == tiny_dataset.catalog.n_items and meta.n_users == tiny_dataset.users.n_users
    assert meta.feature_spec.recent_items_len == 20 and len(meta.feature_spec.user_count_features) == 15
    assert meta.feature_spec.image_model is None and meta.feature_spec.image_dim == 0
    maps = art.load_id_maps(directory)
    assert maps.item_ids == tiny_dataset.catalog.item_ids and maps.categories[0] == "<unknown>"
    arrays = art.load_item_arrays(directory)
    assert arrays.embeddings.shape == (meta.n_items, meta.embedding_dim)
    assert not list(art.versions_root(export_root).glob(".staging-*"))


def test_torchscript_scores_equal_in_memory_models(export_root: Path, trained: TrainedModels) -> None:
    directory = art.current_dir(export_root)
    query = torch.jit.load(str(directory / art.QUERY_TOWER_FILE))
    ranker = torch.jit.load(str(directory / art.RANKER_FILE))
    arrays = art.load_item_arrays(directory)
    profiles = art.load_user_profiles(directory)
    gen = torch.Generator().manual_seed(1)
    b, n = 6, 9
    user = torch.randint(0, profiles.shape[0] + 1, (b,), generator=gen)
    profile = torch.as_tensor(np.concatenate([np.zeros((1, profiles.shape[1]), np.int64), profiles]))[user]
    recent = torch.randint(0, arrays.embeddings.shape[0] + 1, (b, 20), generator=gen)
    ctx = torch.stack([torch.randint(0, 4, (b,)), torch.randint(0, 24, (b,)), torch.randint(0, 7, (b,))], 1)
    features = UserFeatures(user, profile, recent, ctx)
    trained.two_tower.cpu().eval()
    trained.ranker.cpu().eval()
    with torch.no_grad():
        torch.testing.assert_close(query(features.to_dict()), trained.two_tower.query_tower(features))
        items = torch.randint(1, arrays.embeddings.shape[0] + 1, (b, n), generator=gen)
        rows = items - 1
        candidates = ItemFeatures(items, torch.as_tensor(arrays.category_idx)[rows],
                                  torch.as_tensor(arrays.dense)[rows], torch.as_tensor(arrays.text)[rows],
                                  torch.as_tensor(arrays.image)[rows])  # fmt: skip
        batch = RankerBatch(features, torch.rand(b, 15, generator=gen) * 5, candidates)
        inputs = {name: batch.to_dict()[name] for name in RANKER_INPUTS}  # as serving builds it
        torch.testing.assert_close(ranker(inputs), trained.ranker(batch))
    # exported item embeddings are the item tower's output (row r <-> item r + 1)
    np.testing.assert_allclose(arrays.embeddings, trained.item_embeddings()[1:], rtol=1e-5, atol=1e-6)


def test_exported_query_tower_reads_unknown_ids_as_index_zero(export_root: Path) -> None:
    directory = art.current_dir(export_root)
    query = torch.jit.load(str(directory / art.QUERY_TOWER_FILE))
    meta = art.load_metadata(directory)
    inputs = {
        MODEL_USER_IDX: torch.tensor([meta.n_users + 5, 0]),
        MODEL_PROFILE_IDX: torch.zeros(2, 3, dtype=torch.long),
        MODEL_RECENT_ITEMS: torch.zeros(2, 20, dtype=torch.long),
        MODEL_CONTEXT_IDX: torch.zeros(2, 3, dtype=torch.long),
    }
    with torch.no_grad():
        out = query(inputs)
    torch.testing.assert_close(out[0], out[1])
    with pytest.raises(RuntimeError, match="KeyError: context_idx"):
        query({k: v for k, v in inputs.items() if k != MODEL_CONTEXT_IDX})


def test_export_of_another_format_version_is_rejected_at_its_metadata(export_root: Path, tmp_path: Path) -> None:
    copy = _copy_version(export_root, tmp_path)
    meta = json.loads((copy / art.METADATA_FILE).read_text())
    assert meta["format_version"] == art.FORMAT_VERSION
    meta["format_version"] = 1  # the positional-argument models
    (copy / art.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="format_version 1, this reader needs 2"):
        art.load_metadata(copy)


def test_faiss_index_matches_brute_force(export_root: Path, settings: TrainerSettings) -> None:
    directory = art.current_dir(export_root)
    embeddings = art.load_item_arrays(directory).embeddings
    index = read_index(str(directory / art.INDEX_FILE))
    queries = np.random.default_rng(0).standard_normal((8, embeddings.shape[1])).astype(np.float32)
    s1, i1 = search(index, queries, 10)
    s2, i2 = brute_force(embeddings, queries, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    hnsw, name = build_index(embeddings, settings.model_copy(update={"index_type": "hnsw"}))
    assert name.startswith("HNSW")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(search(hnsw, queries, 10)[1], i2, strict=True)])
    assert recall >= 0.9


def test_reload_for_finetuning_gives_identical_models(export_root: Path, trained: TrainedModels) -> None:
    models, meta, state = load_trained(art.current_dir(export_root))
    assert meta.kind == "full"
    for a, b in zip(models.two_tower.state_dict().values(), trained.two_tower.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b.cpu())
    np.testing.assert_array_equal(models.items.category_idx, trained.items.category_idx)


def _copy_version(export_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(art.current_dir(export_root), target)
    return target


def test_missing_file_is_an_artifact_error(export_root: Path, tmp_path: Path) -> None:
    copy = _copy_version(export_root, tmp_path)
    (copy / art.ITEM_FEATURES_FILE).unlink()
    with pytest.raises(ArtifactError, match="missing export file"):
        art.load_item_arrays(copy)


def test_corrupt_files_are_artifact_errors(export_root: Path, tmp_path: Path) -> None:
    copy = _copy_version(export_root, tmp_path)
    (copy / art.ITEM_EMBEDDINGS_FILE).write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="corrupt export file"):
        art.load_item_arrays(copy)
    (copy / art.METADATA_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt export metadata"):
        art.load_metadata(copy)


def test_mismatched_feature_spec_is_an_artifact_error(export_root: Path, tmp_path: Path) -> None:
    copy = _copy_version(export_root, tmp_path)
    meta = json.loads((copy / art.METADATA_FILE).read_text())
    meta["feature_spec"]["text_dim"] += 1
    (copy / art.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="feature spec needs"):
        art.load_item_arrays(copy)
    meta["surprise"] = 1
    (copy / art.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="surprise"):
        art.load_metadata(copy)


def test_current_pointing_nowhere_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no published model"):
        art.read_current(tmp_path)
    (tmp_path / art.CURRENT_FILE).write_text("v20260101000000-abcdef\n")
    with pytest.raises(ArtifactError, match="not under"):
        art.read_current(tmp_path)


def test_interrupted_training_resumes_from_its_checkpoint(
    tiny_dataset: Dataset, tiny_content: ContentEmbeddings, settings: TrainerSettings, tmp_path: Path
) -> None:
    rows = np.arange(len(tiny_dataset.events))
    first = train_models(tiny_dataset, rows, tiny_content, settings, checkpoint_dir=tmp_path, retrieval_epochs=1)
    assert first.stats[0].resumed_from_epoch == 0 and (tmp_path / "retrieval.pt").is_file()
    again = train_models(tiny_dataset, rows, tiny_content, settings, checkpoint_dir=tmp_path, retrieval_epochs=2)
    assert again.stats[0].resumed_from_epoch == 1
    assert again.stats[0].epochs == 1  # only the missing epoch ran


def test_content_encoder_embeds_a_catalog_item_as_the_trainer_does_an_unknown_one(
    export_root: Path, trained: TrainedModels, tiny_dataset: Dataset, settings: TrainerSettings
) -> None:
    directory = art.current_dir(export_root)
    meta = art.check_version_dir(directory)
    assert meta.models[art.CONTENT_ENCODER_MODEL].file == art.CONTENT_ENCODER_FILE
    assert meta.feature_spec.text_embedding_dim == 384 and meta.feature_spec.image_embedding_dim == 0
    encoder = torch.jit.load(str(directory / art.CONTENT_ENCODER_FILE))
    rows = np.array([1, 5, 17, tiny_dataset.catalog.n_items])
    raw_text, _ = encode_texts([tiny_dataset.catalog.texts[r - 1] for r in rows], settings)
    maps = art.load_id_maps(directory)
    categories = [tiny_dataset.catalog.categories[c - 1] for c in tiny_dataset.catalog.category_idx[rows]]
    inputs = {
        MODEL_ITEM_CATEGORY: torch.tensor([maps.categories.index(c) for c in categories]),
        MODEL_ITEM_PRICE: torch.as_tensor(tiny_dataset.catalog.price[rows]),
        MODEL_TEXT_EMBEDDING: torch.as_tensor(raw_text),
        MODEL_IMAGE_EMBEDDING: torch.zeros((len(rows), 0)),
    }
    assert tuple(inputs) == CONTENT_ENCODER_INPUTS
    with torch.no_grad():
        out = encoder(inputs)
        tower = trained.two_tower.item_tower.cpu().eval()
        tables = trained.items.to("cpu")
        expected = tower(
            tables.features(torch.as_tensor(rows))._replace(item_idx=torch.zeros(len(rows), dtype=torch.long))
        )
    assert set(out) == set(CONTENT_ENCODER_OUTPUTS)
    np.testing.assert_allclose(out[MODEL_ITEM_TEXT].numpy(), trained.items.text[rows], atol=1e-5)
    np.testing.assert_allclose(out[MODEL_ITEM_DENSE][:, 1].numpy(), trained.items.dense[rows, 1], atol=1e-6)
    assert (out[MODEL_ITEM_DENSE][:, 0] == 0).all()  # no interactions yet
    np.testing.assert_allclose(out[MODEL_ITEM_EMBEDDING].numpy(), expected.numpy(), atol=1e-4)
    # Content alone differs from the learned vector of a known item (the id embedding adds to it) ...
    learned = trained.item_embeddings()[rows]
    assert not np.allclose(out[MODEL_ITEM_EMBEDDING].numpy(), learned, atol=1e-4)
    # ... and a missing input is named.
    with pytest.raises(Exception, match=MODEL_TEXT_EMBEDDING):
        encoder({k: v for k, v in inputs.items() if k != MODEL_TEXT_EMBEDDING})

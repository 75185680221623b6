"""Trainer settings (env prefix ``STREAMREC_TRAINER_``); paths come from :class:`streamrec.settings.PathsSettings`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from streamrec.settings import ComponentSettings


class TrainerSettings(ComponentSettings):
    """Model sizes, optimisation, content embeddings, index and export options of the trainer."""

    section: ClassVar[str] = "trainer"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_TRAINER_")

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train: auto picks CUDA when present, else CPU."
    )
    seed: int = Field(42, description="Seed of every random generator (data order, init, sampling).")
    num_threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default.")
    embedding_dim: int = Field(64, ge=8, description="Output dimension D of both towers (retrieval space).")
    id_dim: int = Field(64, ge=4, description="Width of the id / category embedding tables.")
    retrieval_epochs: int = Field(
        10, ge=1, description="Most epochs of the Two-Tower model in a full training (early stopping may stop it)."
    )
    validation_fraction: float = Field(
        0.05, ge=0, lt=0.5, description="Newest share of retrieval examples held out for early stopping."
    )
    patience: int = Field(1, ge=1, description="Epochs without a better validation loss before stopping.")
    ranker_epochs: int = Field(3, ge=1, description="Epochs of the DLRM ranker in a full training.")
    batch_size: int = Field(1024, ge=16, description="Examples per step (also the in-batch negatives count).")
    learning_rate: float = Field(1e-2, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(1e-6, ge=0, description="Adam weight decay of dense layers.")
    temperature: float = Field(0.05, gt=0, description="Softmax temperature of the in-batch retrieval loss.")
    max_examples_per_epoch: int = Field(
        0, ge=0, description="Cap on examples per epoch, sampled without replacement; 0 uses them all."
    )
    mask_user_prob: float = Field(0.15, ge=0, le=1, description="Training drop rate of the user id.")
    mask_profile_prob: float = Field(0.1, ge=0, le=1, description="Training drop rate of the user profile.")
    mask_recent_prob: float = Field(0.1, ge=0, le=1, description="Training drop rate of the recent items.")
    mask_item_id_prob: float = Field(
        0.2, ge=0, le=1, description="Training drop rate of the item id, so content alone embeds new items."
    )
    ranker_negatives: int = Field(4, ge=1, description="Negatives per positive for the ranker (N = 1 + this).")
    ranker_negative_power: float = Field(
        0.0, ge=0, le=1, description="Random negatives ~ popularity ** this (0 = uniform, unbiased for ranking)."
    )
    text_model: str = Field(
        "", description="Sentence-transformers model path; empty uses the bundled all-MiniLM-L6-v2."
    )
    clip_model: str | None = Field(
        None, description="CLIP model path or hub name for image embeddings; unset skips image embeddings."
    )
    text_dim: int = Field(32, ge=0, description="PCA dims of text embeddings; 0 keeps the model's width.")
    image_dim: int = Field(16, ge=0, description="PCA dims of image embeddings; 0 keeps the model's width.")
    embed_batch_size: int = Field(128, ge=1, description="Items per batch when computing content embeddings.")
    index_type: Literal["auto", "flat", "ivf", "hnsw"] = Field(
        "auto", description="FAISS index: auto is exact IndexFlatIP up to flat_max_items, else IVF."
    )
    flat_max_items: int = Field(100_000, ge=1, description="Largest catalog 'auto' indexes exactly.")
    ivf_nlist: int = Field(256, ge=1, description="IVF cells.")
    ivf_nprobe: int = Field(16, ge=1, description="IVF cells probed per query.")
    hnsw_m: int = Field(32, ge=4, description="HNSW neighbours per node.")
    finetune_epochs: int = Field(2, ge=1, description="Most epochs of a fine-tuning run.")
    finetune_learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate when fine-tuning.")
    finetune_replay_ratio: float = Field(
        0.5, ge=0, description="Replay examples from older days per example of the newest day."
    )
    finetune_replay_days: int = Field(7, ge=1, description="How many older days the replay sample draws from.")
    finetune_holdout_fraction: float = Field(
        0.1, gt=0, lt=1, description="Newest part of the newest day held out to compare with production."
    )
    promote_tolerance: float = Field(
        0.0, ge=0, description="Promote if candidate Recall@20 >= production's * (1 - tolerance)."
    )
    retrieval_candidates: int = Field(300, ge=1, description="Retrieval depth before ranking (eval, e2e).")
    serve_after_publish: list[str] = Field(
        default_factory=lambda: ["serve", "prepare"],
        description="streamrec sub-command run after publishing when a Triton is configured (it switches the "
        "whole ensemble to the new version); [] disables.",
    )
    cache_dir: Path = Field(Path(".streamrec/cache"), description="Content-embedding cache.")
    checkpoint_dir: Path = Field(Path(".streamrec/checkpoints"), description="Resumable training checkpoints.")
    progress: bool = Field(True, description="Show tqdm progress bars.")

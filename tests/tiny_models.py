"""Tiny models built in the tests (no weights are downloaded offline): a randomly initialised CLIP."""

from __future__ import annotations

from pathlib import Path


def build_tiny_clip(path: Path) -> str:
    """A CLIP of a few thousand weights saved with its image processor (32x32 pictures) under ``path``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },  # fmt: skip
        projection_dim=12,
    )
    CLIPModel(config).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)

"""``streamrec train full``: both models over an archive date range, FAISS index, export, publish."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import artifacts as art
from streamrec.catalog.settings import CatalogSettings
from streamrec.settings import TritonSettings
from trainer.data.loading import Dataset, load_dataset
from trainer.embeddings.content import build_content_embeddings
from trainer.export.triton import switch_serving
from trainer.export.writer import stage_version
from trainer.settings import TrainerSettings
from trainer.train.pipeline import TrainedModels, train_models


@dataclass
class RunSummary:
    kind: str
    version: str | None
    promoted: bool
    reason: str
    dataset: str
    window: tuple[str, str]
    events: int
    seconds: float
    stages: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    reloaded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: In-memory objects for callers such as benchmarks (models, evaluation task); never printed.
    extras: dict[str, Any] = field(default_factory=dict, repr=False)

    def lines(self) -> list[str]:
        out = [
            f"{self.kind} training on {self.dataset} {self.window[0]}..{self.window[1]}: {self.events} events, "
            f"{self.seconds:.1f} s",
        ]
        for stage, info in self.stages.items():
            out.append(
                f"  {stage}: {info['epochs']} epochs, {info['examples_seen']} examples, "
                f"{info['samples_per_s']:.0f} samples/s, final loss {info['final_loss']}"
            )
        for key, value in self.metrics.items():
            if key.endswith(("recall@10", "recall@20", "ndcg@10", "auc", "_seconds")):
                out.append(f"  {key}: {value:.4f}")
        out.append(f"  {'published and promoted' if self.promoted else 'not promoted'}: {self.version or '-'}")
        out.append(f"  {self.reason}")
        out += [f"  note: {n}" for n in self.notes]
        if self.reloaded:
            out.append(f"  Triton switched by: streamrec {', '.join(self.reloaded)}")
        return out


def day_of(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def run_key(
    root: Path, start: date | None, end: date | None, settings: TrainerSettings, kind: str, catalog: str = ""
) -> str:
    """Identifies a run for resuming: same data, catalog, window and settings -> same checkpoint folder."""
    payload = json.dumps(
        {
            "root": str(Path(root).resolve()),
            "catalog": catalog,
            "start": str(start),
            "end": str(end),
            "kind": kind,
            "settings": settings.model_dump(mode="json", exclude={"progress", "num_threads"}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def reload_triton(settings: TrainerSettings, triton_url: str | None) -> list[str]:
    """Switch a configured Triton to the version just published; returns what was switched."""
    if not settings.serve_after_publish:
        return []
    triton = TritonSettings.load()
    url = triton_url or (triton.http_url if triton.external else None)
    if url is None:
        return []
    # Serving owns the model repository (versioned slots behind a pinned ensemble), so the trainer asks
    # serving's own command to switch, through the CLI, rather than reloading stage models itself.
    return switch_serving(url, settings.serve_after_publish)


def publish_models(
    export_root: Path,
    models: TrainedModels,
    dataset: Dataset,
    settings: TrainerSettings,
    *,
    kind: str,
    window: tuple[str, str],
    metrics: dict[str, float],
    parent: str | None = None,
    make_current: bool = True,
    item_embeddings: np.ndarray | None = None,
) -> str:
    staged = stage_version(
        export_root,
        models,
        dataset,
        settings,
        kind=kind,
        window=window,
        metrics=metrics,
        parent_version=parent,
        item_embeddings=item_embeddings,
    )
    final = art.publish(export_root, staged, make_current=make_current)
    return final.name


def run_full(
    root: Path,
    export_root: Path,
    settings: TrainerSettings,
    start: date | None = None,
    end: date | None = None,
    triton_url: str | None = None,
    resume: bool = True,
    catalog: str | None = None,
) -> RunSummary:
    """Train on the events of ``root`` in ``[start, end]`` and the item/user tables ``catalog`` names
    (see ``trainer.data.loading.catalog_root``: by default the root's own tables, else its newest snapshot)."""
    began = time.perf_counter()
    dataset = load_dataset(root, start, end, catalog=catalog)
    content = build_content_embeddings(dataset.catalog.texts, dataset.catalog.images, settings)
    key = run_key(root, start, end, settings, "full", catalog=dataset.extra["catalog_root"])
    checkpoint_dir = settings.checkpoint_dir / key
    if not resume and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    rows = np.arange(len(dataset.events))
    models = train_models(dataset, rows, content, settings, checkpoint_dir=checkpoint_dir)
    window = (day_of(int(dataset.events.ts_ms[0])), day_of(int(dataset.events.ts_ms[-1])))
    stages = models.summary()
    metrics = {f"{stage}_final_loss": float(info["final_loss"]) for stage, info in stages.items()}
    metrics.update({f"{stage}_samples_per_s": float(info["samples_per_s"]) for stage, info in stages.items()})
    # An item without events in the window is embedded as the catalog sync embeds an item added later.
    unlearned = models.items.popularity == 0
    unlearned[0] = False
    embeddings = models.borrowed_item_embeddings(unlearned, CatalogSettings.load().new_item_neighbours)
    version = publish_models(
        export_root, models, dataset, settings, kind="full", window=window, metrics=metrics, item_embeddings=embeddings
    )
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    reloaded = reload_triton(settings, triton_url)
    return RunSummary(
        kind="full",
        version=version,
        promoted=True,
        reason="a full training always becomes the current version",
        dataset=dataset.name,
        window=window,
        events=len(dataset.events),
        seconds=time.perf_counter() - began,
        stages=stages,
        reloaded=reloaded,
        notes=[f"catalog: {dataset.extra['catalog_root']} ({dataset.catalog.n_items} items)"]
        + content.notes
        + ([f"{dataset.dropped_events} events dropped (unknown item or event type)"] if dataset.dropped_events else []),
    )

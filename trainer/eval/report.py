"""Markdown report with PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.eval.metrics import KS


def _plot_metric(results: dict[str, dict[str, float]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in results.items():
        ys = [values.get(f"{metric}@{k}", float("nan")) for k in KS]
        ax.plot(KS, ys, marker="o", label=name)
    ax.set_xlabel("K")
    ax.set_ylabel(f"{metric}@K")
    ax.set_xticks(list(KS))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_losses(losses: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(losses), 1), figsize=(4 * max(len(losses), 1), 3))
    axes_list = axes if hasattr(axes, "__len__") else [axes]
    for ax, (name, values) in zip(axes_list, losses.items(), strict=False):
        ax.plot(range(1, len(values) + 1), values, marker="o")
        ax.set_title(f"{name} training loss")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    out_dir: Path,
    title: str,
    context: dict[str, Any],
    results: dict[str, dict[str, float]],
    losses: dict[str, list[float]],
    notes: list[str],
    sections: list[tuple[str, dict[str, Any], dict[str, dict[str, float]], list[str]]] | None = None,
) -> Path:
    """Write report.md, metrics.json and the plots into ``out_dir``; returns the report path.

    ``sections``: further tables (title, context, results, notes), e.g. the cold-start evaluation.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_metric(results, "recall", out_dir / "recall_at_k.png")
    _plot_metric(results, "ndcg", out_dir / "ndcg_at_k.png")
    if losses:
        _plot_losses(losses, out_dir / "training_loss.png")
    columns = [f"{m}@{k}" for m in ("recall", "ndcg", "hr") for k in KS] + ["coverage@10", "auc"]
    lines = [f"# {title}", ""]
    lines += [f"- **{key}**: {value}" for key, value in context.items()]
    lines += _table(results, columns)
    lines += ["", "![Recall@K](recall_at_k.png)", "", "![NDCG@K](ndcg_at_k.png)", ""]
    if losses:
        lines += ["![training loss](training_loss.png)", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    payload: dict[str, Any] = {"context": context, "results": results}
    for title_, section_context, section_results, section_notes in sections or []:
        lines += [f"## {title_}", ""] + [f"- **{key}**: {value}" for key, value in section_context.items()]
        lines += _table(section_results, columns) + [""] + [f"- {n}" for n in section_notes] + [""]
        payload.setdefault("sections", {})[title_] = {"context": section_context, "results": section_results}
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _table(results: dict[str, dict[str, float]], columns: list[str]) -> list[str]:
    lines = ["", "| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in results.items():
        cells = [f"{values[c]:.4f}" if c in values else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines

"""The trainer's commands through an argparse parser built like the core CLI's; fine-tuning and eval end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from streamrec import artifacts as art
from streamrec.cli.plugins import PluginRegistry
from streamrec.errors import ArtifactError, DataError, StreamrecError
from trainer.cli import register


def run(argv: list[str], env: dict[str, str] | None = None) -> int:
    registry = PluginRegistry()
    register(registry)
    parser = argparse.ArgumentParser(prog="streamrec")
    subs = parser.add_subparsers(dest="command", required=True)
    for command in registry.commands.values():
        sub = subs.add_parser(command.name)
        sub.set_defaults(_handler=command.setup(sub))
    args = parser.parse_args(argv)
    return int(args._handler(args))


@pytest.fixture
def fast_env(monkeypatch: pytest.MonkeyPatch, cache_dir: Path, tmp_path: Path) -> None:
    values = {"RETRIEVAL_EPOCHS": "2", "RANKER_EPOCHS": "1", "FINETUNE_EPOCHS": "1", "BATCH_SIZE": "256",
              "EMBEDDING_DIM": "16", "ID_DIM": "16", "TEXT_DIM": "8", "CACHE_DIR": str(cache_dir),
              "CHECKPOINT_DIR": str(tmp_path / "ckpt"), "PROGRESS": "false", "DEVICE": "cpu"}  # fmt: skip
    for key, value in values.items():
        monkeypatch.setenv(f"STREAMREC_TRAINER_{key}", value)


def test_registers_commands_and_settings() -> None:
    registry = PluginRegistry()
    register(registry)
    assert set(registry.commands) == {"data", "train", "eval"}
    assert any(s.section == "trainer" for s in registry.settings)


def test_data_prepare_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn"
    code = run(["data", "prepare", "--dataset", "synthetic", "--preset", "tiny", "--seed", "5", "--users", "100",
                "--items", "30", "--events", "1000", "--days", "3", "--out", str(out)])  # fmt: skip
    assert code == 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["sizes"] == {"n_users": 100, "n_items": 30, "n_events": 1000} and info["seed"] == 5
    assert "prepared synthetic" in capsys.readouterr().out


def test_bad_input_raises_typed_errors(tmp_path: Path, fast_env: None) -> None:
    with pytest.raises(DataError, match="no archived interactions"):
        run(["train", "full", "--data", str(tmp_path), "--export-root", str(tmp_path / "exp")])
    with pytest.raises(ArtifactError, match="no published model"):
        run(["train", "finetune", "--data", str(tmp_path), "--export-root", str(tmp_path / "exp")])
    with pytest.raises(StreamrecError):
        run(["eval", "--data", str(tmp_path), "--out", str(tmp_path / "report")])


def test_bad_dates_are_argparse_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        run(["train", "full", "--data", str(tmp_path), "--start", "yesterday"])


@pytest.mark.slow
def test_full_then_finetune_publishes_or_keeps_with_reason(
    tiny_root: Path, tmp_path: Path, fast_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    exports = tmp_path / "exports"
    assert run(["train", "full", "--data", str(tiny_root), "--end", "2026-11-05", "--export-root", str(exports)]) == 0
    first = art.read_current(exports)
    assert run(["train", "finetune", "--data", str(tiny_root), "--export-root", str(exports)]) == 0
    out = capsys.readouterr().out
    current = art.read_current(exports)
    if "promoted: hold-out" in out:
        assert current != first
        meta = art.load_metadata(art.version_dir(exports, current))
        assert meta.kind == "finetune" and meta.parent_version == first
        assert meta.training_window.end == "2026-11-06"
        # item tower and index fixed: the fine-tuned version serves the same item embeddings
        import numpy as np

        np.testing.assert_array_equal(
            art.load_item_arrays(art.version_dir(exports, first)).embeddings,
            art.load_item_arrays(art.version_dir(exports, current)).embeddings,
        )
    else:
        assert "kept production" in out and current == first


@pytest.mark.slow
def test_eval_writes_report_with_baselines_and_oracle(tiny_root: Path, tmp_path: Path, fast_env: None) -> None:
    out = tmp_path / "report"
    assert run(["eval", "--data", str(tiny_root), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["results"]
    assert {"popularity", "BPR-MF", "planted oracle", "two-tower retrieval", "two-tower + DLRM (end to end)"} <= set(
        metrics
    )
    for values in metrics.values():
        assert 0.0 <= values["recall@10"] <= values["recall@50"] <= 1.0
    assert (out / "recall_at_k.png").read_bytes()[:4] == b"\x89PNG"
    assert "| popularity |" in (out / "report.md").read_text()


def test_train_from_an_archive_with_an_explicit_catalog_folder(
    tiny_root: Path, tmp_path: Path, fast_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from streamrec.archive import INTERACTIONS_DIR, ITEMS_FILE, USERS_FILE

    archive, tables = tmp_path / "archive", tmp_path / "tables"
    shutil.copytree(tiny_root / INTERACTIONS_DIR, archive / INTERACTIONS_DIR)
    tables.mkdir()
    for name in (ITEMS_FILE, USERS_FILE):
        shutil.copy(tiny_root / name, tables / name)
    exports = tmp_path / "exports"
    with pytest.raises(DataError, match="holds no items.parquet"):
        run(["train", "full", "--data", str(archive), "--catalog", str(tmp_path / "nowhere")])
    argv = ["train", "full", "--data", str(archive), "--catalog", str(tables), "--export-root", str(exports)]
    assert run([*argv, "--end", "2026-11-03"]) == 0
    assert f"catalog: {tables}" in capsys.readouterr().out
    assert art.load_id_maps(art.current_dir(exports)).item_ids[:3] == ["i000000", "i000001", "i000002"]

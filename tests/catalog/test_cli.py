"""``streamrec catalog import``: bad input ends in exit 2 with one line naming the report; nothing is sent."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from streamrec.catalog import cli
from streamrec.cli.plugins import PluginRegistry

GOOD = "item_id,title,category,price\na,Mug,kitchen,3\nb,Bowl,kitchen,4\n"
BAD = "item_id,title,category,price\na,Mug,kitchen,3\nb,Bowl,kitchen,abc\nc,,kitchen,1\n"


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if anything would be produced; records what would have been sent."""
    sent: list[int] = []

    def refuse(*args: object, **kwargs: object) -> int:
        raise AssertionError("nothing may be sent")

    monkeypatch.setattr(cli, "send_records", refuse)
    return sent


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["import", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_invalid_rows_exit_2_with_one_line_and_a_report_of_every_bad_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_kafka: list[int]
) -> None:
    source = tmp_path / "shop.csv"
    source.write_text(BAD)
    report = tmp_path / "out" / "report.csv"
    code, out, err = run([str(source), "--report", str(report)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("streamrec: error: 2 of 3 rows invalid")
    assert "nothing sent" in err and str(report) in err
    rows = list(csv.DictReader(report.open()))
    assert [(r["file"], r["line"], r["field"]) for r in rows] == [
        (str(source), "3", "price"),
        (str(source), "4", "title"),
    ]
    assert rows[0]["reason"] == "not a number: 'abc'"


def test_a_bad_file_exits_2_with_one_line_and_a_jsonl_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_kafka: list[int]
) -> None:
    source = tmp_path / "shop.csv"
    source.write_text("item_id,name\na,Mug\n")
    report = tmp_path / "r.jsonl"
    code, _, err = run([str(source), "--report", str(report)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "missing required column(s): title (or --map title=COLUMN), category" in err
    [entry] = [json.loads(line) for line in report.read_text().splitlines()]
    assert entry == {
        "file": str(source),
        "line": 1,
        "field": "title",
        "reason": "missing required column(s): title (or --map title=COLUMN), category (or --map category=COLUMN)",
    }


def test_mapping_fixes_the_file_and_dry_run_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_kafka: list[int]
) -> None:
    source = tmp_path / "shop.csv"
    source.write_text("item_id,name,dept\na,Mug,kitchen\n")
    code, out, err = run([str(source), "--map", "title=name", "--map", "category=dept", "--dry-run"], capsys)
    assert (code, err) == (0, "")
    assert out == f"validated 1 items records from {source}; not sent (--dry-run)\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--map", "title"], "--map: expected FIELD=COLUMN, got 'title'"),
        (["--map", "colour=c"], "--map: 'colour' is not a field of the items contract"),
        (["--map", "title=a", "--map", "title=b"], "--map: field 'title' mapped twice"),
    ],
)
def test_bad_mapping_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_kafka: list[int], argv: list[str], message: str
) -> None:
    source = tmp_path / "shop.csv"
    source.write_text(GOOD)
    code, _, err = run([str(source), *argv], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_skip_invalid_without_any_valid_row_sends_nothing_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_kafka: list[int]
) -> None:
    source = tmp_path / "shop.csv"
    source.write_text("item_id,title,category\na b,Mug,k\n")
    code, _, err = run([str(source), "--skip-invalid", "--report", str(tmp_path / "r.csv")], capsys)
    assert code == 2 and "no valid row to send" in err


def test_unknown_suffix_and_missing_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_kafka: list[int]
) -> None:
    (tmp_path / "shop.xlsx").write_text("x")
    code, _, err = run([str(tmp_path / "shop.xlsx"), "--report", str(tmp_path / "r.csv")], capsys)
    assert code == 2 and "cannot tell the format of shop.xlsx" in err
    code, _, err = run([str(tmp_path / "absent.csv"), "--report", str(tmp_path / "r.csv")], capsys)
    assert code == 2 and "absent.csv: no such file" in err


def test_register_adds_the_catalog_command_and_its_settings() -> None:
    from streamrec.catalog.settings import CatalogSettings

    registry = PluginRegistry()
    cli.register(registry)
    assert "catalog" in registry.commands and CatalogSettings in registry.settings

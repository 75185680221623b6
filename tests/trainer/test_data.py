"""Dataset loaders: MovieLens-100K from the bundled files, synthetic determinism, point-in-time features."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamrec.archive import ITEM_COLUMNS, partition_dates, read_interactions, read_items, read_users
from streamrec.errors import DataError
from trainer.data import movielens, synthetic
from trainer.data.history import UserHistory, naive_counts
from trainer.data.loading import Dataset, load_dataset


@pytest.fixture(scope="module")
def ml_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return movielens.load_frames()


def test_movielens_frames_from_the_bundled_files(ml_frames: tuple[pd.DataFrame, ...]) -> None:
    events, items, users = ml_frames
    assert (len(events), len(items), len(users)) == (100_000, 1682, 943)
    assert set(events["event_type"]) == {"purchase", "click", "dislike"}
    assert events["timestamp"].min().year == 1997 and events["timestamp"].max().year == 1998
    assert str(events["timestamp"].dt.tz) == "UTC"
    assert (
        items.loc[items["item_id"] == "m1", "text"].item() == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    )
    assert items.loc[items["item_id"] == "m1", "category"].item() == "Animation"
    assert {"profile_age", "profile_gender", "profile_occupation"} <= set(users.columns)


def test_movielens_event_ids_are_deterministic(ml_frames: tuple[pd.DataFrame, ...]) -> None:
    again, _, _ = movielens.load_frames()
    assert again["event_id"].tolist() == ml_frames[0]["event_id"].tolist()
    assert ml_frames[0]["event_id"].is_unique


def test_movielens_rating_mapping_positives_are_ratings_4_and_5(ml_frames: tuple[pd.DataFrame, ...]) -> None:
    source = pd.read_csv(movielens.bundled_dir() / "ml-100k.inter", sep="\t")
    expected = int((source["rating:float"] >= 4).sum())
    assert int((ml_frames[0]["event_type"] == "purchase").sum()) == expected


def test_movielens_prepare_writes_the_archive_layout(tmp_path: Path) -> None:
    movielens.prepare(tmp_path)
    days = partition_dates(tmp_path)
    assert days[0].isoformat() == "1997-09-20" and len(days) > 200
    frame = read_interactions(tmp_path, days[0], days[0])
    assert len(frame) > 0
    assert tuple(read_items(tmp_path).columns[: len(ITEM_COLUMNS)]) == ITEM_COLUMNS
    assert "profile_occupation" in read_users(tmp_path).columns
    assert (tmp_path / "dataset.json").is_file()


def test_synthetic_is_deterministic_by_seed() -> None:
    config = synthetic.SyntheticConfig.preset("tiny", seed=3).with_sizes(users=300, items=50, events=3000)
    a, items_a, _, _ = synthetic.generate(config)
    b, items_b, _, _ = synthetic.generate(config)
    c, _, _, _ = synthetic.generate(synthetic.SyntheticConfig.preset("tiny", seed=4).with_sizes(300, 50, 3000))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert items_a["image_png"].tolist() == items_b["image_png"].tolist()
    assert not np.array_equal(a["item"], c["item"])
    assert len(a["ts_ms"]) == 3000


def test_synthetic_dataset_has_images_texts_and_oracle(tiny_root: Path, tiny_dataset: Dataset) -> None:
    assert tiny_dataset.catalog.images[0] is not None and tiny_dataset.catalog.images[0][:4] == b"\x89PNG"
    assert "Price" in tiny_dataset.catalog.texts[0]
    assert (tiny_root / "oracle.npz").is_file()
    assert len(tiny_dataset.events) == 8000
    assert np.all(np.diff(tiny_dataset.events.ts_ms) >= 0)
    hours = tiny_dataset.events.context()[:, 1]
    assert np.bincount(hours, minlength=24)[20] > np.bincount(hours, minlength=24)[8]  # diurnal peak


def test_vectorised_counts_match_the_definition(tiny_dataset: Dataset) -> None:
    events = tiny_dataset.events
    history = UserHistory.build(events, tiny_dataset.users.n_users)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(events), 40, replace=False)
    _, counts = history.for_events(events, rows)
    for j, row in enumerate(rows):
        expected = naive_counts(events, int(events.user[row]), int(events.ts_ms[row]), upper_rank=int(row))
        np.testing.assert_array_equal(counts[j], expected)
    users = events.user[rows]
    at = events.ts_ms[rows] + 1
    _, counts_at = history.at_time(users, at)
    for j, user in enumerate(users):
        np.testing.assert_array_equal(counts_at[j], naive_counts(events, int(user), int(at[j])))


def test_recent_items_are_the_last_non_dislike_items_newest_first(tiny_dataset: Dataset) -> None:
    events = tiny_dataset.events
    history = UserHistory.build(events, tiny_dataset.users.n_users)
    user = int(np.bincount(events.user).argmax())
    mine = np.flatnonzero(events.user == user)
    row = mine[-1]
    recent, _ = history.for_events(events, np.array([row]))
    before = [r for r in mine if r < row and events.etype[r] != 4][::-1][:20]
    expected = np.zeros(20, dtype=np.int64)
    expected[: len(before)] = events.item[before]
    np.testing.assert_array_equal(recent[0], expected)


def test_empty_archive_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no archived interactions"):
        load_dataset(tmp_path)


def test_corrupt_parquet_is_a_data_error(tmp_path: Path, tiny_root: Path) -> None:
    import shutil

    shutil.copytree(tiny_root, tmp_path / "copy")
    first = sorted((tmp_path / "copy" / "interactions").glob("date=*/*.parquet"))[0]
    first.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="corrupt archive file"):
        load_dataset(tmp_path / "copy")


def test_events_on_unknown_items_are_dropped_and_counted(tmp_path: Path, tiny_root: Path) -> None:
    import shutil

    shutil.copytree(tiny_root, tmp_path / "copy")
    items = pd.read_parquet(tmp_path / "copy" / "items.parquet")
    items.iloc[1:].to_parquet(tmp_path / "copy" / "items.parquet")  # the first item disappears
    data = load_dataset(tmp_path / "copy")
    assert data.dropped_events > 0
    assert data.catalog.n_items == len(items) - 1


def test_synthetic_new_items_have_no_event_before_their_launch_day(tmp_path: Path) -> None:
    config = synthetic.SyntheticConfig.preset("tiny", seed=3).with_sizes(users=400, events=6_000, days=5)
    config = config.with_new_items(15, 2)
    info = synthetic.prepare(tmp_path, config)
    launches = {item: date.fromisoformat(day) for item, day in info["new_items"].items()}
    assert len(launches) == 15 and set(launches.values()) <= {date(2026, 11, 4), date(2026, 11, 5)}
    events = read_interactions(tmp_path)
    day = events["timestamp"].dt.date
    launch = events["item_id"].map(launches)
    assert not (launch.notna() & (day < launch)).any()
    assert events["item_id"].isin(list(launches)).sum() > 50  # launched items are then seen and clicked
    with pytest.raises(DataError, match="new item days"):
        config.with_new_items(3, 5)

"""MovieLens-100K from the files bundled in the recbole wheel (located, never imported).

Ratings become events (see docs/trainer.md): 4-5 -> ``purchase`` (the positives of evaluation),
3 -> ``click`` (watched, lukewarm), 1-2 -> ``dislike``. Timestamps are epoch seconds (1997-1998), stored UTC.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.archive import write_interactions
from streamrec.errors import DataError
from trainer.data.common import reset_dataset_root, write_info, write_items, write_users

NAME = "ml-100k"
#: Fixed namespace so that event ids are identical every time the dataset is prepared.
EVENT_NAMESPACE = uuid.UUID("7b0c8a5e-5d7e-4c55-9d61-2f0a4b3c9e11")
RATING_TO_EVENT = {5: "purchase", 4: "purchase", 3: "click", 2: "dislike", 1: "dislike"}
POSITIVE_TYPES = ("purchase",)
#: MovieLens has no prices; a neutral constant keeps the column (and the ranker's price feature) defined.
NEUTRAL_PRICE = 1.0
AGE_BUCKETS = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"))


def bundled_dir() -> Path:
    """``recbole/dataset_example/ml-100k`` inside the installed wheel, found without importing recbole."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("recbole is not installed; install it with: pip install --no-deps recbole")
    for location in spec.submodule_search_locations:
        path = Path(location) / "dataset_example" / "ml-100k"
        if (path / "ml-100k.inter").is_file():
            return path
    raise DataError("the installed recbole wheel has no dataset_example/ml-100k files")


def _read_atomic_file(path: Path) -> pd.DataFrame:
    """RecBole's atomic files: tab-separated, header ``name:type``."""
    if not path.is_file():
        raise DataError(f"MovieLens file not found: {path}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def age_bucket(age: int) -> str:
    for upper, label in AGE_BUCKETS:
        if age < upper:
            return label
    return "56+"


def load_frames(source: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(events, items, users) frames in the archive's columns."""
    base = source or bundled_dir()
    inter = _read_atomic_file(base / "ml-100k.inter")
    try:
        ratings = inter["rating"].astype(float).astype(int)
        seconds = inter["timestamp"].astype(float).astype(np.int64)
    except (KeyError, ValueError) as exc:
        raise DataError(f"unreadable ml-100k.inter: {exc}") from None
    user_ids = "u" + inter["user_id"]
    item_ids = "m" + inter["item_id"]
    timestamps = pd.to_datetime(seconds, unit="s", utc=True)
    keys = user_ids + "/" + item_ids + "/" + seconds.astype(str)
    events = pd.DataFrame(
        {
            "event_id": [str(uuid.uuid5(EVENT_NAMESPACE, f"{NAME}/{k}")) for k in keys],
            "user_id": user_ids,
            "item_id": item_ids,
            "event_type": ratings.map(RATING_TO_EVENT),
            "timestamp": timestamps,
            "device": "unknown",
            "session_id": user_ids + "-" + timestamps.dt.strftime("%Y%m%d"),
            "locale": "en-US",
            "schema_version": 1,
        }
    )
    if events["event_type"].isna().any():
        raise DataError("ml-100k.inter has ratings outside 1..5")
    item_frame = _read_atomic_file(base / "ml-100k.item")
    genres = item_frame["class"].str.split(" ")
    items = pd.DataFrame(
        {
            "item_id": "m" + item_frame["item_id"],
            "category": genres.str[0].replace("", "unknown"),
            "price": NEUTRAL_PRICE,
            "text": item_frame["movie_title"]
            + " ("
            + item_frame["release_year"]
            + "). Genres: "
            + genres.str.join(", "),
            "image_png": None,
        }
    )
    user_frame = _read_atomic_file(base / "ml-100k.user")
    users = pd.DataFrame(
        {
            "user_id": "u" + user_frame["user_id"],
            "profile_age": [age_bucket(int(a)) for a in user_frame["age"]],
            "profile_gender": user_frame["gender"],
            "profile_occupation": user_frame["occupation"],
        }
    )
    return events, items, users


def prepare(root: Path, source: Path | None = None) -> dict[str, object]:
    """Write MovieLens-100K under ``root`` in the archive layout; returns the dataset info."""
    events, items, users = load_frames(source)
    reset_dataset_root(root)
    write_interactions(events, root, "ml-100k")
    write_items(root, items)
    write_users(root, users)
    info: dict[str, object] = {
        "name": NAME,
        "source": "recbole/dataset_example/ml-100k (GroupLens MovieLens 100K)",
        "seed": None,
        "sizes": {"n_users": len(users), "n_items": len(items), "n_events": len(events)},
        "event_type_mapping": {str(k): v for k, v in RATING_TO_EVENT.items()},
        "positive_event_types": list(POSITIVE_TYPES),
        "retrieval_event_types": ["click", "purchase"],
        "price": f"constant {NEUTRAL_PRICE} (MovieLens has no prices)",
        "start": events["timestamp"].min().strftime("%Y-%m-%d"),
        "end": events["timestamp"].max().strftime("%Y-%m-%d"),
    }
    write_info(root, info)
    return info

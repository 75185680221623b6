"""Synthetic interaction data with a planted preference model (vectorised numpy, deterministic by seed).

Generative story (all sizes are parameters; see :class:`SyntheticConfig` presets):

* items: a category (Zipf-like shares), a latent vector near their category's centre, a power-law popularity
  bias, a price, a text description and a 64x64 PNG drawn from those attributes;
* users: a latent vector mixing one or two favourite categories, a log-normal activity level, a primary
  device and a profile (age band, region, membership) that correlates with the favourite category;
* impressions (``view``): time from a diurnal curve, device mostly the user's primary one; the item comes
  from the user's softmax ``beta * u.v + b`` or, with probability ``alpha``, from a context distribution
  that depends on the time of day and the device;
* new items (``new_items`` > 0): that many items, drawn at random, are launched at the start of one of the
  last ``new_item_days`` days; no event names them before (a draw of an unlaunched item is redrawn from the
  launched ones), and their text and image come from their planted vector like every other item's;
* funnel: ``click`` with probability ``sigmoid(gamma * u.v + delta)``, then ``add_to_cart`` and ``purchase``;
  ``dislike`` on a few poorly matched views.

The generator's parameters are saved as ``oracle.npz`` so that models can be compared with the oracle
ranking of ``P(view) * P(click | view)``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamrec.archive import INTERACTIONS_DIR, INTERACTIONS_SCHEMA, write_atomic
from streamrec.errors import DataError
from trainer.data.common import ORACLE_FILE, reset_dataset_root, write_info, write_items, write_users
from trainer.data.loading import encode

NAME = "synthetic"
POSITIVE_TYPES = ("click", "add_to_cart", "purchase")
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARES = (0.55, 0.35, 0.10)
N_DAYPARTS = 4
CATEGORY_NAMES = (
    "electronics", "books", "garden", "toys", "fashion", "sports", "beauty", "kitchen", "music", "games",
    "office", "pets", "automotive", "health", "travel", "grocery", "baby", "tools", "art", "outdoor",
)  # fmt: skip
ADJECTIVES = (
    "compact", "premium", "classic", "vibrant", "rugged", "elegant", "playful", "minimal", "smart", "cozy",
    "sleek", "vintage", "bold", "gentle", "sturdy", "bright",
)  # fmt: skip
MATERIALS = ("wood", "steel", "cotton", "leather", "glass", "ceramic", "bamboo", "wool")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
MEMBERSHIP = ("none", "basic", "plus")


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 20_000
    n_items: int = 2_465
    n_events: int = 500_000
    n_days: int = 14
    n_categories: int = 20
    latent_dim: int = 16
    start: date = date(2026, 11, 1)
    seed: int = 42
    image_size: int = 64
    beta: float = 3.0  # preference strength
    alpha: float = 0.2  # share of context-driven impressions
    gamma: float = 1.5  # click sensitivity to affinity
    delta: float = -2.0  # click base rate (logit)
    new_items: int = 0  # items launched on the last days (cold-start evaluation)
    new_item_days: int = 1  # ... at the start of one of the last this-many days

    @classmethod
    def preset(cls, name: str, seed: int = 42) -> SyntheticConfig:
        sizes = {
            "tiny": {"n_users": 2_000, "n_items": 200, "n_events": 20_000, "image_size": 32},
            "small": {"n_users": 20_000, "n_items": 2_465, "n_events": 500_000},
            "reference": {"n_users": 300_000, "n_items": 2_465, "n_events": 13_000_000},
        }
        if name not in sizes:
            raise DataError(f"unknown synthetic preset {name!r}; choose from {sorted(sizes)}")
        return cls(seed=seed, **sizes[name])  # type: ignore[arg-type]

    def with_new_items(self, new_items: int | None, new_item_days: int | None = None) -> SyntheticConfig:
        items = self.new_items if new_items is None else new_items
        days = self.new_item_days if new_item_days is None else new_item_days
        if items < 0 or items >= self.n_items:
            raise DataError(f"new items must be in 0..{self.n_items - 1}, got {items}")
        if items and (days < 1 or days >= self.n_days):
            raise DataError(f"new item days must be in 1..{self.n_days - 1}, got {days}")
        return replace(self, new_items=items, new_item_days=days)

    def with_sizes(
        self, users: int | None = None, items: int | None = None, events: int | None = None, days: int | None = None
    ) -> SyntheticConfig:
        changes = {
            k: v for k, v in {"n_users": users, "n_items": items, "n_events": events, "n_days": days}.items() if v
        }
        for key, value in changes.items():
            if value < 1:
                raise DataError(f"{key} must be positive, got {value}")
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass
class Planted:
    """The generator's parameters: everything the oracle needs."""

    user_factors: np.ndarray  # float32 [n_users, K], already scaled by beta
    item_factors: np.ndarray  # float32 [n_items, K]
    item_bias: np.ndarray  # float32 [n_items]
    item_category: np.ndarray  # int64 [n_items]
    context_logits: np.ndarray  # float32 [N_DAYPARTS * len(DEVICES), n_items]
    user_device: np.ndarray  # int64 [n_users], primary device index into DEVICES
    daypart_share: np.ndarray  # float64 [N_DAYPARTS]
    config: SyntheticConfig
    launch_day: np.ndarray | None = None  # int64 [n_items], first day (0-based) an item can be seen

    def available(self, day: int) -> np.ndarray:
        """Items launched by ``day``.  -> bool [n_items]"""
        if self.launch_day is None:
            return np.ones(self.config.n_items, dtype=bool)
        return self.launch_day <= day


def launch_days(config: SyntheticConfig) -> np.ndarray:
    """Day each item becomes visible: 0, or one of the last ``new_item_days`` for the new items (own stream).

    -> int64 [n_items]
    """
    days = np.zeros(config.n_items, dtype=np.int64)
    if config.new_items:
        rng = np.random.default_rng([config.seed, 4])
        chosen = rng.choice(config.n_items, config.new_items, replace=False)
        days[chosen] = config.n_days - config.new_item_days + rng.integers(0, config.new_item_days, config.new_items)
    return days


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _hourly_shares() -> np.ndarray:
    hours = np.arange(24)
    weights = 1.0 + 0.85 * np.cos(2 * np.pi * (hours - 20) / 24)  # evening peak, night trough
    return weights / weights.sum()


def plant(config: SyntheticConfig, rng: np.random.Generator) -> Planted:
    k, n_cat = config.latent_dim, config.n_categories
    centres = rng.standard_normal((n_cat, k)) / np.sqrt(k) * 1.6
    cat_share = 1.0 / np.arange(1, n_cat + 1) ** 0.6
    item_cat = rng.choice(n_cat, size=config.n_items, p=cat_share / cat_share.sum())
    items = centres[item_cat] + rng.standard_normal((config.n_items, k)) / np.sqrt(k) * 0.7
    ranks = rng.permutation(config.n_items) + 1
    bias = -0.9 * np.log(ranks)
    fav = rng.integers(0, n_cat, size=(config.n_users, 2))
    mix = rng.uniform(0.5, 1.0, size=(config.n_users, 1))
    users = mix * centres[fav[:, 0]] + (1 - mix) * centres[fav[:, 1]]
    users = users + rng.standard_normal((config.n_users, k)) / np.sqrt(k) * 0.5
    device = rng.choice(len(DEVICES), size=config.n_users, p=DEVICE_SHARES)
    ctx_cat = rng.standard_normal((N_DAYPARTS, len(DEVICES), n_cat)) * 1.0
    context_logits = bias[None, None, :] + ctx_cat[:, :, item_cat]
    hourly = _hourly_shares()
    return Planted(
        user_factors=(users * config.beta).astype(np.float32),
        item_factors=items.astype(np.float32),
        item_bias=bias.astype(np.float32),
        item_category=item_cat.astype(np.int64),
        context_logits=context_logits.reshape(N_DAYPARTS * len(DEVICES), -1).astype(np.float32),
        user_device=device.astype(np.int64),
        daypart_share=hourly.reshape(N_DAYPARTS, 6).sum(axis=1),
        config=config,
        launch_day=launch_days(config) if config.new_items else None,
    )


def _sample_from_rows(probs: np.ndarray, row_of_draw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item per draw from ``probs[row_of_draw]`` by inverse CDF on the flattened row CDFs."""
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    flat = (cdf + np.arange(len(cdf))[:, None]).ravel()
    draws = np.searchsorted(flat, row_of_draw + rng.random(len(row_of_draw)) * (1 - 1e-12), side="right")
    return np.minimum(draws - row_of_draw * probs.shape[1], probs.shape[1] - 1)


def simulate(planted: Planted, rng: np.random.Generator, n_views: int | None = None) -> dict[str, np.ndarray]:
    """Events as arrays (unsorted): user, item, etype (code into ETYPE_NAMES), ts_ms, device (-1 unknown).

    Without ``n_views``, a small pilot run measures events per view so that the total lands on n_events
    (surplus plain views are then dropped to make it exact).
    """
    config = planted.config
    trim = n_views is None
    if n_views is None:
        pilot_views = min(200_000, config.n_events)
        pilot = simulate(planted, np.random.default_rng([config.seed, 2]), pilot_views)
        n_views = int(np.ceil(config.n_events * pilot_views / len(pilot["ts_ms"]) * 1.03))
    activity = rng.lognormal(0.0, 1.0, config.n_users)
    per_user = rng.multinomial(n_views, activity / activity.sum())
    user = np.repeat(np.arange(config.n_users), per_user)
    day = rng.integers(0, config.n_days, n_views)
    hour = rng.choice(24, size=n_views, p=_hourly_shares())
    sec = rng.integers(0, 3600, n_views)
    primary = rng.random(n_views) < 0.85
    device = np.where(primary, planted.user_device[user], rng.integers(0, len(DEVICES), n_views))
    from_context = rng.random(n_views) < config.alpha
    item = np.empty(n_views, dtype=np.int64)
    personal = np.flatnonzero(~from_context)
    chunk = max(1, 4_000_000 // config.n_items)
    for lo in range(0, config.n_users, chunk):
        hi = min(lo + chunk, config.n_users)
        probs = _softmax_rows(planted.user_factors[lo:hi] @ planted.item_factors.T + planted.item_bias[None, :])
        sel = personal[(user[personal] >= lo) & (user[personal] < hi)]
        item[sel] = _sample_from_rows(probs.astype(np.float64), user[sel] - lo, rng)
    ctx_rows = (hour // 6) * len(DEVICES) + device
    ctx_sel = np.flatnonzero(from_context)
    item[ctx_sel] = _sample_from_rows(_softmax_rows(planted.context_logits.astype(np.float64)), ctx_rows[ctx_sel], rng)
    if planted.launch_day is not None:
        _redraw_unlaunched(planted, planted.launch_day, item, user, day, ctx_rows, from_context, rng)
    affinity = np.einsum("ij,ij->i", planted.user_factors[user], planted.item_factors[item]) / config.beta
    p_click = 1.0 / (1.0 + np.exp(-(config.gamma * affinity + config.delta)))
    click = rng.random(n_views) < p_click
    cart = click & (rng.random(n_views) < 0.3)
    purchase = cart & (rng.random(n_views) < 0.5)
    dislike = ~click & (rng.random(n_views) < 0.08 * (1 - p_click))
    base_ms = int(datetime(config.start.year, config.start.month, config.start.day, tzinfo=UTC).timestamp() * 1000)
    last_ms = base_ms + config.n_days * 86_400_000 - 1
    view_ts = base_ms + day * 86_400_000 + hour * 3_600_000 + sec * 1000
    parts = {"view": np.flatnonzero(np.ones(n_views, bool)), "click": np.flatnonzero(click),
             "add_to_cart": np.flatnonzero(cart), "purchase": np.flatnonzero(purchase),
             "dislike": np.flatnonzero(dislike)}  # fmt: skip
    delays = {"view": 0, "click": 20_000, "add_to_cart": 80_000, "purchase": 200_000, "dislike": 5_000}
    out: dict[str, list[np.ndarray]] = {"user": [], "item": [], "etype": [], "ts_ms": [], "device": []}
    for code, (name, rows) in enumerate(parts.items()):
        jitter = rng.exponential(delays[name] or 1, len(rows)).astype(np.int64) if delays[name] else 0
        out["user"].append(user[rows])
        out["item"].append(item[rows])
        out["etype"].append(np.full(len(rows), code, np.int8))
        out["ts_ms"].append(np.minimum(view_ts[rows] + jitter, last_ms))
        out["device"].append(device[rows])
    events = {k: np.concatenate(v) for k, v in out.items()}
    unknown = rng.random(len(events["device"])) < 0.01
    events["device"] = np.where(unknown, -1, events["device"])
    if trim and len(events["ts_ms"]) > config.n_events:  # drop surplus plain views: the size is exact
        views = np.flatnonzero(events["etype"] == 0)
        drop = rng.choice(views, len(events["ts_ms"]) - config.n_events, replace=False)
        keep = np.ones(len(events["ts_ms"]), bool)
        keep[drop] = False
        events = {k: v[keep] for k, v in events.items()}
    return events


ETYPE_NAMES = ("view", "click", "add_to_cart", "purchase", "dislike")


def _redraw_unlaunched(
    planted: Planted,
    launch_day: np.ndarray,
    item: np.ndarray,
    user: np.ndarray,
    day: np.ndarray,
    ctx_rows: np.ndarray,
    from_context: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Redraw (in place) each impression of an item not launched on its day from the same distribution
    restricted to the launched items: the impression then follows that restricted distribution exactly."""
    for d in np.unique(day):
        launched = launch_day <= d
        bad = np.flatnonzero((day == d) & ~launched[item])
        if len(bad) == 0:
            continue
        mask = np.log(launched.astype(np.float64) + 1e-300)[None, :]
        personal = bad[~from_context[bad]]
        users, local = np.unique(user[personal], return_inverse=True)
        chunk = max(1, 4_000_000 // planted.config.n_items)
        for lo in range(0, len(users), chunk):
            sel = (local >= lo) & (local < lo + chunk)
            logits = planted.user_factors[users[lo : lo + chunk]] @ planted.item_factors.T
            probs = _softmax_rows((logits + planted.item_bias[None, :]).astype(np.float64) + mask)
            item[personal[sel]] = _sample_from_rows(probs, local[sel] - lo, rng)
        ctx = bad[from_context[bad]]
        if len(ctx):
            probs = _softmax_rows(planted.context_logits.astype(np.float64) + mask)
            item[ctx] = _sample_from_rows(probs, ctx_rows[ctx], rng)


def _uuid_strings(rng: np.random.Generator, n: int) -> pa.Array:
    """Random version-4 UUID strings, vectorised through a hex lookup table."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexchars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = hexchars[raw >> 4]
    digits[:, 1::2] = hexchars[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in ((0, 0), (9, 8), (14, 12), (19, 16), (24, 20)):
        width = {0: 8, 9: 4, 14: 4, 19: 4, 24: 12}[dst]
        out[:, dst : dst + width] = digits[:, src : src + width]
    binary = pa.array(out.view("S36").ravel(), type=pa.binary(36))
    return binary.cast(pa.binary()).cast(pa.string())


def _dictionary_strings(codes: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values)).cast(pa.string())


def render_images(planted: Planted, rng: np.random.Generator) -> list[bytes]:
    """64x64 RGB PNGs: hue from the category, pattern kind from the category, frequency from the latent."""
    from PIL import Image

    size, n = planted.config.image_size, len(planted.item_factors)
    hue = planted.item_category / max(planted.config.n_categories, 1)
    base = np.stack([np.sin(2 * np.pi * (hue + s)) * 0.5 + 0.5 for s in (0.0, 1 / 3, 2 / 3)], axis=1)
    accent = 1.0 - base
    freq = 2 + (np.abs(planted.item_factors[:, 0]) * 6).astype(int) % 6
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for i in range(n):
        kind = planted.item_category[i] % 4
        if kind == 0:
            mask = np.sin(2 * np.pi * freq[i] * yy) > 0
        elif kind == 1:
            mask = np.sin(2 * np.pi * freq[i] * xx) > 0
        elif kind == 2:
            mask = (np.floor(xx * freq[i]) + np.floor(yy * freq[i])) % 2 == 0
        else:
            mask = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * freq[i] ** 2 % 1.0 < 0.5
        pixels = np.where(mask[..., None], base[i], accent[i]) * 255
        pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG", optimize=False)
        out.append(buffer.getvalue())
    return out


def item_texts(planted: Planted, prices: np.ndarray) -> list[str]:
    proj = planted.item_factors @ np.linspace(-1, 1, planted.config.latent_dim * 3).reshape(-1, 3)
    adj1 = np.argmax(planted.item_factors[:, : len(ADJECTIVES)], axis=1) % len(ADJECTIVES)
    adj2 = (np.argmin(planted.item_factors, axis=1) + 3) % len(ADJECTIVES)
    material = np.argmax(proj, axis=1) % len(MATERIALS)
    names = _category_names(planted.config.n_categories)
    return [
        f"{ADJECTIVES[adj1[i]]} {names[c]} item, {ADJECTIVES[adj2[i]]} {MATERIALS[material[i]]} finish, "
        f"for {names[c]} fans. Price {prices[i]:.2f}."
        for i, c in enumerate(planted.item_category)
    ]


def _category_names(n: int) -> list[str]:
    return [
        CATEGORY_NAMES[c % len(CATEGORY_NAMES)] + (f"-{c // len(CATEGORY_NAMES)}" if c >= 20 else "") for c in range(n)
    ]


def generate(config: SyntheticConfig) -> tuple[dict[str, np.ndarray], Any, Any, Planted]:
    """(events arrays, items frame, users frame, planted parameters)."""
    import pandas as pd

    rng = np.random.default_rng(config.seed)
    planted = plant(config, rng)
    events = simulate(planted, rng)
    # Item attributes get their own stream, so item texts (and their cached embeddings) do not depend on
    # how many events were simulated.
    item_rng = np.random.default_rng([config.seed, 3])
    prices = np.round(np.exp(item_rng.normal(3.0, 0.8, config.n_items) + 0.1 * planted.item_category % 3), 2)
    item_ids = [f"i{i:06d}" for i in range(config.n_items)]
    names = _category_names(config.n_categories)
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "category": [names[c] for c in planted.item_category],
            "price": prices,
            "text": item_texts(planted, prices),
            "image_png": render_images(planted, item_rng),
        }
    )
    fav = np.argmax(planted.user_factors[:, :3], axis=1)
    users = pd.DataFrame(
        {
            "user_id": [f"u{u:07d}" for u in range(config.n_users)],
            "profile_age": np.array(AGE_BANDS)[(fav + rng.integers(0, 2, config.n_users)) % len(AGE_BANDS)],
            "profile_region": np.array(["north", "south", "east", "west"])[rng.integers(0, 4, config.n_users)],
            "profile_membership": np.array(MEMBERSHIP)[rng.choice(3, config.n_users, p=(0.6, 0.3, 0.1))],
        }
    )
    return events, items, users, planted


def write_events(root: Path, events: dict[str, np.ndarray], config: SyntheticConfig) -> None:
    rng = np.random.default_rng([config.seed, 1])
    order = np.argsort(events["ts_ms"], kind="stable")
    events = {k: v[order] for k, v in events.items()}
    user_names = [f"u{u:07d}" for u in range(config.n_users)]
    item_names = [f"i{i:06d}" for i in range(config.n_items)]
    days = events["ts_ms"] // 86_400_000
    bounds = np.flatnonzero(np.diff(days)) + 1
    for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(days)]]), strict=True):
        n = int(hi - lo)
        user = events["user"][lo:hi]
        dev = events["device"][lo:hi]
        device = _dictionary_strings(np.where(dev < 0, 3, dev), [*DEVICES, "unknown"])
        day = (date(1970, 1, 1) + timedelta(days=int(days[lo]))).isoformat()
        day_str = day.replace("-", "")
        users_arr = _dictionary_strings(user, user_names)
        session = pc.binary_join_element_wise(users_arr, pa.array([day_str] * n), "-")
        table = pa.Table.from_arrays(
            [
                _uuid_strings(rng, n),
                users_arr,
                _dictionary_strings(events["item"][lo:hi], item_names),
                _dictionary_strings(events["etype"][lo:hi], list(ETYPE_NAMES)),
                pa.array(events["ts_ms"][lo:hi], type=pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                device,
                session,
                pa.array(["en-US"] * n),
                pa.array(np.ones(n, np.int16)),
            ],
            schema=INTERACTIONS_SCHEMA,
        )
        write_atomic(table, root / INTERACTIONS_DIR / f"date={day}" / "synthetic.parquet")


def save_oracle(path: Path, planted: Planted) -> None:
    np.savez(
        path,
        user_factors=planted.user_factors,
        item_factors=planted.item_factors,
        item_bias=planted.item_bias,
        context_logits=planted.context_logits,
        user_device=planted.user_device,
        daypart_share=planted.daypart_share,
        alpha=np.float32(planted.config.alpha),
        beta=np.float32(planted.config.beta),
        gamma=np.float32(planted.config.gamma),
        delta=np.float32(planted.config.delta),
        user_ids=np.array([f"u{u:07d}" for u in range(planted.config.n_users)]),
        item_ids=np.array([f"i{i:06d}" for i in range(planted.config.n_items)]),
    )


class Oracle:
    """Scores of the planted model: P(view | u) * P(click | u, i), context marginalised per user."""

    def __init__(self, data: dict[str, np.ndarray], user_rows: np.ndarray, item_cols: np.ndarray) -> None:
        self.data = data
        self.user_rows = user_rows  # oracle row of each dataset user index (-1 unknown)
        self.item_cols = item_cols  # oracle column of each dataset item index

    @classmethod
    def load(cls, path: Path, user_ids: list[str], item_ids: list[str]) -> Oracle:
        with np.load(path, allow_pickle=False) as raw:
            data = {k: raw[k] for k in raw.files}
        users = np.concatenate([[-1], encode(user_ids, data["user_ids"].tolist()) - 1])
        items = np.concatenate([[0], encode(item_ids, data["item_ids"].tolist()) - 1])
        return cls(data, users, items)

    def scores(self, users: np.ndarray) -> np.ndarray:
        """users Long[b] (dataset indices) -> Float[b, n_items + 1] (log-probabilities of a positive)."""
        d = self.data
        rows = self.user_rows[users]
        factors = d["user_factors"][rows]
        logits = factors @ d["item_factors"].T + d["item_bias"][None, :]
        personal = _softmax_rows(logits.astype(np.float64))
        ctx = _softmax_rows(d["context_logits"].astype(np.float64)).reshape(N_DAYPARTS, len(DEVICES), -1)
        dev_share = np.full((len(rows), len(DEVICES)), 0.15 / (len(DEVICES) - 1))
        dev_share[np.arange(len(rows)), d["user_device"][rows]] = 0.85
        ctx_mix = np.einsum("p,bd,pdi->bi", d["daypart_share"], dev_share, ctx)
        view = (1 - float(d["alpha"])) * personal + float(d["alpha"]) * ctx_mix
        affinity = factors @ d["item_factors"].T / float(d["beta"])
        click = 1.0 / (1.0 + np.exp(-(float(d["gamma"]) * affinity + float(d["delta"]))))
        out = np.full((len(users), len(self.item_cols)), -np.inf)
        out[:, 1:] = np.log(view * click + 1e-30)[:, self.item_cols[1:]]
        return out


def prepare(root: Path, config: SyntheticConfig) -> dict[str, Any]:
    events, items, users, planted = generate(config)
    reset_dataset_root(root)
    write_events(root, events, config)
    write_items(root, items)
    write_users(root, users)
    save_oracle(root / ORACLE_FILE, planted)
    counts = {name: int((events["etype"] == code).sum()) for code, name in enumerate(ETYPE_NAMES)}
    end = config.start + timedelta(days=config.n_days - 1)
    info: dict[str, Any] = {
        "name": NAME,
        "source": "trainer.data.synthetic (planted latent-factor model)",
        "seed": config.seed,
        "config": {k: (str(v) if isinstance(v, date) else v) for k, v in config.__dict__.items()},
        "sizes": {"n_users": config.n_users, "n_items": config.n_items, "n_events": int(len(events["ts_ms"]))},
        "event_counts": counts,
        "event_type_mapping": "generated funnel: view -> click -> add_to_cart -> purchase; dislike on poor matches",
        "positive_event_types": list(POSITIVE_TYPES),
        "retrieval_event_types": list(POSITIVE_TYPES),
        "start": config.start.isoformat(),
        "end": end.isoformat(),
    }
    if planted.launch_day is not None:
        new = np.flatnonzero(planted.launch_day > 0)
        info["new_items"] = {
            str(items["item_id"].iloc[i]): (config.start + timedelta(days=int(planted.launch_day[i]))).isoformat()
            for i in new
        }
    write_info(root, info)
    return info

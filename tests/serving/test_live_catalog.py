"""The live catalog in a serving process: entries applied as new snapshots (appended in index order, gaps padded
and masked, availability masked and unmasked, earlier snapshots untouched), every stage's view of an index it
has not received yet, FAISS masking on every index type, the follower thread, the reference pipeline
returning an added item and dropping an unavailable one, and the popularity fallback leaving out unavailable
items."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.pipeline.catalog_snapshot import CatalogSnapshot, ExportRows, apply_entries
from serving.pipeline.config import StageConfig
from serving.pipeline.contract import (
    BLOOM_CANDIDATES,
    BLOOM_FLAGS,
    CANDIDATES,
    CONTEXT_FLAGS,
    FEATURE_FLAGS,
    FILTERED_CANDIDATES,
    ITEM_CATEGORY,
    ITEM_CONTENT,
    QUERY,
    RANK_SCORES,
)
from serving.pipeline.live_catalog import CatalogFollower, LiveCatalog, export_catalog, redis_source
from serving.pipeline.reference import ReferencePipeline
from serving.pipeline.stages.bloom_filter import BloomStage
from serving.pipeline.stages.item_features import ItemFeatureCache, ItemFeatureStage
from serving.pipeline.stages.request_filters import FilterStage
from serving.pipeline.stages.rerank import RerankStage
from serving.pipeline.stages.retrieval import RetrievalStage, masked_search_params
from streamrec import artifacts as art
from streamrec.catalog.live import LiveCatalogWriter, LiveItem, LiveKeys, LiveVectors
from streamrec.pipeline_client import (
    ITEM_IDS,
    OPTIONS,
    K,
    LiveAvailability,
    PopularityFallback,
    RecommendOptions,
    RecommendRequest,
    request_arrays,
)
from tests.serving.conftest import DEAD_REDIS, make_config

N, D, Q, T, IMG = 6, 4, 2, 3, 0  # export items, embedding dim, dense / text / image widths
CATEGORIES = ["<unknown>", "books", "games"]


def export_rows(seed: int = 0) -> ExportRows:
    rng = np.random.default_rng(seed)
    items = art.ItemArrays(
        embeddings=rng.normal(size=(N, D)).astype(np.float32),
        category_idx=np.array([1, 2, 1, 2, 1, 2], dtype=np.int64),
        dense=rng.normal(size=(N, Q)).astype(np.float32),
        text=rng.normal(size=(N, T)).astype(np.float32),
        image=np.zeros((N, IMG), np.float32),
        popularity=np.ones(N, np.float32),
    )
    return ExportRows([f"e{i}" for i in range(1, N + 1)], items, len(CATEGORIES))


def vectors(seed: int, embedding: np.ndarray | None = None) -> LiveVectors:
    rng = np.random.default_rng(100 + seed)
    return LiveVectors(
        rng.normal(size=D).astype(np.float32) if embedding is None else embedding.astype(np.float32),
        rng.normal(size=Q).astype(np.float32),
        rng.normal(size=T).astype(np.float32),
        np.zeros(IMG, np.float32),
    )


def added(index: int, seed: int | None = None, available: bool = True, category: int = 2) -> LiveItem:
    return LiveItem(f"new-{index}", index, available, 1000 + index, category, vectors(index if seed is None else seed))


@pytest.fixture
def base() -> CatalogSnapshot:
    return CatalogSnapshot.of_export(export_rows())


def test_added_items_are_appended_in_index_order_whatever_the_entry_order(base: CatalogSnapshot) -> None:
    got = apply_entries(base, [added(N + 2), added(N + 1)])
    snap = got.snapshot
    assert (got.added, got.skipped, snap.n_items, snap.generation) == (2, (), N + 2, 1)
    idx = np.array([N + 1, N + 2])
    assert list(snap.item_ids_of(idx)) == ["new-7", "new-8"]
    assert snap.index_of("new-8") == N + 2 and snap.index_of("e3") == 3 and snap.index_of("nope") == 0
    assert snap.servable(idx).all() and list(snap.category_of(idx)) == [2, 2]
    for i, row in zip(idx, snap.content_of(idx), strict=True):
        v = vectors(int(i))
        np.testing.assert_array_equal(row, np.concatenate([v.dense, v.text, v.image]))
        np.testing.assert_array_equal(snap.live.embeddings[i - N - 1], v.embedding)
    np.testing.assert_allclose(np.linalg.norm(snap.unit_of(idx), axis=1), 1.0, rtol=1e-6)
    # The export's rows are shared, not copied, and answer as before.
    assert snap.base is base.base
    np.testing.assert_array_equal(snap.content_of(np.arange(N + 1)), base.base.content)


def test_an_index_ahead_of_a_missing_one_pads_the_gap_unavailable_until_it_arrives(base: CatalogSnapshot) -> None:
    ahead = apply_entries(base, [added(N + 3)]).snapshot
    gap = np.array([N + 1, N + 2])
    assert ahead.n_items == N + 3 and ahead.known(gap).all()
    assert not ahead.servable(gap).any() and ahead.servable(np.array([N + 3])).all()
    assert list(ahead.item_ids_of(gap)) == ["", ""]
    np.testing.assert_array_equal(ahead.content_of(gap), 0.0)
    filled = apply_entries(ahead, [added(N + 1)]).snapshot
    assert list(filled.servable(np.array([N + 1, N + 2, N + 3]))) == [True, False, True]
    assert filled.item_ids_of(np.array([N + 1]))[0] == "new-7" and filled.n_items == N + 3


def test_available_false_masks_and_true_without_vectors_unmasks(base: CatalogSnapshot) -> None:
    snap = apply_entries(base, [added(N + 1)]).snapshot
    masked = apply_entries(snap, [LiveItem("e2", 2, False, 5), LiveItem("new-7", N + 1, False, 6)])
    m = masked.snapshot
    assert masked.availability == 2 and m.n_unavailable == 2
    assert list(m.servable(np.array([1, 2, 3, N + 1]))) == [True, False, True, False]
    assert m.export_bitmap is not None
    assert list(np.unpackbits(m.export_bitmap, bitorder="little")[:N]) == [1, 0, 1, 1, 1, 1]  # FAISS rows
    back = apply_entries(m, [LiveItem("e2", 2, True, 7), LiveItem("new-7", N + 1, True, 8)]).snapshot
    assert back.servable(np.array([2, N + 1])).all() and back.export_bitmap is None
    # The item's rows were kept while it was masked.
    np.testing.assert_array_equal(back.content_of(np.array([N + 1])), snap.content_of(np.array([N + 1])))
    # The same state again changes nothing (a replay): no new snapshot.
    again = apply_entries(back, [LiveItem("e2", 2, True, 9)])
    assert again.snapshot is back and (again.added, again.availability) == (0, 0)


def test_earlier_snapshots_never_change(base: CatalogSnapshot) -> None:
    first = apply_entries(base, [added(N + 1)]).snapshot
    frozen = (first.live.content.copy(), first.available.copy(), dict(first.live_index))
    later = apply_entries(first, [added(N + 1, seed=42), added(N + 2), LiveItem("e1", 1, False, 3)]).snapshot
    np.testing.assert_array_equal(first.live.content, frozen[0])
    np.testing.assert_array_equal(first.available, frozen[1])
    assert first.live_index == frozen[2] and first.n_items == N + 1 and later.n_items == N + 2
    assert not np.array_equal(later.content_of(np.array([N + 1])), first.content_of(np.array([N + 1])))
    assert base.n_items == N and base.available[1:].all() and len(base.live) == 0


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (LiveItem("other", 3, False, 1), "is the export's 'e3'"),
        (LiveItem("e3", N + 1, True, 1, 1, vectors(1)), "in the export as 3"),
        (LiveItem("x", 0, True, 1, 1, vectors(1)), "not an item index"),
        (LiveItem("x", N + 1, True, 1), "no rows yet"),
        (
            LiveItem("x", N + 1, True, 1, 1, LiveVectors(*(np.zeros(w, np.float32) for w in (D + 1, Q, T, IMG)))),
            "vector widths",
        ),
        (
            LiveItem("x", N + 1, True, 1, 1, LiveVectors(*(np.full(w, np.nan, np.float32) for w in (D, Q, T, IMG)))),
            "non-finite",
        ),
    ],
)
def test_entries_that_contradict_the_numbering_are_skipped_and_named(
    base: CatalogSnapshot, entry: LiveItem, reason: str
) -> None:
    got = apply_entries(base, [entry, added(N + 2)])
    assert len(got.skipped) == 1 and reason in got.skipped[0]
    assert got.snapshot.n_items == N + 2 and got.snapshot.servable(np.array([N + 2])).all()
    assert got.snapshot.servable(np.arange(1, N + 1)).all()  # nothing in the export changed


def test_an_unknown_category_is_the_unknown_category(base: CatalogSnapshot) -> None:
    snap = apply_entries(base, [added(N + 1, category=len(CATEGORIES))]).snapshot
    assert snap.category_of(np.array([N + 1]))[0] == 0


# -- stages on a snapshot ------------------------------------------------------------------------------------
def catalog_with_added() -> LiveCatalog:
    catalog = LiveCatalog(CatalogSnapshot.of_export(export_rows()))
    catalog.apply([added(N + 1), added(N + 2), LiveItem("e4", 4, False, 1)])
    return catalog


def test_stages_drop_an_index_their_snapshot_does_not_hold_yet() -> None:
    """In the ensemble layout each stage's process follows the catalog itself: one may get an index another
    process has already applied. It is unknown there — dropped, never an error."""
    catalog = catalog_with_added()  # holds up to N + 2; N + 5 is not there yet
    cand = np.array([[N + 5, 1, N + 1, 4, 0]], dtype=np.int64)
    bloom = BloomStage(None, catalog).run({"USER_ID": np.array([[b"u"]], dtype=object), CANDIDATES.name: cand})
    assert list(bloom[BLOOM_CANDIDATES.name][0]) == [0, 1, N + 1, 4, 0]
    options = np.array([[RecommendOptions().to_json().encode()]], dtype=object)
    filtered = FilterStage(catalog, CATEGORIES).run({BLOOM_CANDIDATES.name: cand, OPTIONS.name: options})
    assert list(filtered[FILTERED_CANDIDATES.name][0]) == [0, 1, N + 1, 0, 0]  # 4 is unavailable
    features = ItemFeatureStage(ItemFeatureCache(catalog)).run({FILTERED_CANDIDATES.name: cand})
    assert list(features[ITEM_CATEGORY.name][0]) == [0, 1, 2, 2, 0]
    np.testing.assert_array_equal(features[ITEM_CONTENT.name][0, 0], 0.0)
    rerank = RerankStage(catalog, "v1").run(
        {
            FILTERED_CANDIDATES.name: cand,
            RANK_SCORES.name: np.array([[9.0, 1.0, 2.0, 8.0, -np.inf]], np.float32),
            ITEM_CATEGORY.name: features[ITEM_CATEGORY.name],
            K.name: np.array([[5]], np.int32),
            OPTIONS.name: options,
            CONTEXT_FLAGS.name: np.zeros((1, 1), np.int32),
            FEATURE_FLAGS.name: np.zeros((1, 1), np.int32),
            BLOOM_FLAGS.name: np.zeros((1, 1), np.int32),
        }
    )
    assert [v for v in rerank[ITEM_IDS.name][0] if v] == [b"new-7", b"e1"]  # unknown and unavailable: gone


def test_filters_see_added_items_by_id_and_category() -> None:
    catalog = catalog_with_added()
    cand = np.array([[1, 2, N + 1, N + 2]], dtype=np.int64)

    def run(opts: RecommendOptions) -> list[int]:
        options = np.array([[opts.to_json().encode()]], dtype=object)
        out = FilterStage(catalog, CATEGORIES).run({BLOOM_CANDIDATES.name: cand, OPTIONS.name: options})
        return [int(v) for v in out[FILTERED_CANDIDATES.name][0]]

    assert run(RecommendOptions(include_categories=("games",))) == [0, 2, N + 1, N + 2]
    assert run(RecommendOptions(exclude_items=("new-8", "e1"))) == [0, 2, N + 1, 0]


@pytest.mark.parametrize("path", ["faiss", "torch"])
def test_retrieval_merges_added_items_by_score_and_never_returns_masked_ones(path: str) -> None:
    """Both search paths: FAISS (CPU instances) and the torch matrix product a GPU instance runs (here on the
    CPU device: the same code)."""
    import faiss

    rows = export_rows()
    index = faiss.IndexFlatIP(D)
    index.add(rows.items.embeddings)
    catalog = LiveCatalog(CatalogSnapshot.of_export(rows))
    stage = RetrievalStage(4, catalog, index=index) if path == "faiss" else RetrievalStage(4, catalog, device="cpu")
    query = rows.items.embeddings[2:3] / np.linalg.norm(rows.items.embeddings[2])
    plain = stage.run({QUERY.name: query})[CANDIDATES.name][0]
    assert sorted(plain) == sorted(set(plain)) and 0 not in plain
    catalog.apply([LiveItem("near", N + 1, True, 1, 1, vectors(1, embedding=query[0] * 50.0))])
    assert list(stage.run({QUERY.name: query})[CANDIDATES.name][0]) == [N + 1, *plain[:3]]
    best = int(plain[0])
    catalog.apply([LiveItem(f"e{best}", best, False, 2), LiveItem("near", N + 1, False, 2)])
    masked = stage.run({QUERY.name: query})[CANDIDATES.name][0]
    assert best not in masked and N + 1 not in masked and list(masked[:3]) == list(plain[1:4])
    # Everything masked: padding only.
    catalog.apply([LiveItem(f"e{i}", i, False, 3) for i in range(1, N + 1)])
    assert list(stage.run({QUERY.name: query})[CANDIDATES.name][0]) == [0, 0, 0, 0]


@pytest.mark.parametrize("path", ["faiss", "torch"])
def test_retrieval_keeps_the_best_added_items_even_when_every_export_item_scores_higher(path: str) -> None:
    """A content-only embedding scores below learned ones: without the kept places the added items would never
    reach the ranker. The best-scoring available ones take the places of the lowest-scoring export items."""
    import faiss

    rows = export_rows()
    index = faiss.IndexFlatIP(D)
    index.add(rows.items.embeddings)
    catalog = LiveCatalog(CatalogSnapshot.of_export(rows))
    kwargs: dict[str, Any] = {"index": index} if path == "faiss" else {"device": "cpu"}
    query = rows.items.embeddings[2:3] / np.linalg.norm(rows.items.embeddings[2])
    plain = list(RetrievalStage(4, catalog, **kwargs).run({QUERY.name: query})[CANDIDATES.name][0])
    # Three added items far below every export item, the middle one the best of them; one unavailable.
    floor = float(np.min(rows.items.embeddings @ query[0])) - 10.0
    weak = [vectors(i, embedding=query[0] * (floor + s)) for i, s in ((1, -3.0), (2, -1.0), (3, -2.0), (4, 5.0))]
    catalog.apply(
        [LiveItem(f"new-{i}", N + i, i != 4, 1, 1, v) for i, v in enumerate(weak, start=1)]
    )  # new-4 would be the best but is unavailable
    assert list(RetrievalStage(4, catalog, **kwargs).run({QUERY.name: query})[CANDIDATES.name][0]) == plain
    kept = list(RetrievalStage(4, catalog, added_kept=2, **kwargs).run({QUERY.name: query})[CANDIDATES.name][0])
    assert kept == [*plain[:2], N + 2, N + 3]  # best first by score: the added ones score lowest
    # More places than added items: every available one, the rest the export's best.
    kept = list(RetrievalStage(5, catalog, added_kept=9, **kwargs).run({QUERY.name: query})[CANDIDATES.name][0])
    assert kept == [*plain[:2], N + 2, N + 3, N + 1]


def test_top_n_keeping_matches_a_sort_of_the_kept_and_the_rest() -> None:
    from serving.pipeline.stages.retrieval import top_n_keeping

    rng = np.random.default_rng(5)
    for _ in range(200):
        m, kept_from = int(rng.integers(1, 12)), int(rng.integers(0, 12))
        n, kept = int(rng.integers(1, 14)), int(rng.integers(0, 5))
        scores = rng.normal(size=(3, m))
        scores[rng.random(size=scores.shape) < 0.2] = -np.inf  # masked: which of them fill up is unspecified
        picked = top_n_keeping(scores, n, kept_from, kept)
        got = np.where(np.isfinite(np.take_along_axis(scores, picked, axis=1)), picked, -1)
        for row in range(3):
            by_score = sorted(range(m), key=lambda c: (-scores[row, c], c))
            tail = [c for c in by_score if c >= kept_from][: min(kept, n)]
            forced = [c for c in tail if np.isfinite(scores[row, c])]
            rest = [c for c in by_score if c not in forced][: min(n, m) - len(forced)]
            want = sorted(forced + rest, key=lambda c: (-scores[row, c], c))
            assert list(got[row]) == [c if np.isfinite(scores[row, c]) else -1 for c in want]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_faiss_masking_keeps_the_index_search_settings(kind: str) -> None:
    import faiss

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    if kind == "flat":
        index = faiss.IndexFlatIP(8)
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(8), 8, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = 8  # every cell: exact, so the masked answer is the unmasked one minus the masked rows
    else:
        index = faiss.IndexHNSWFlat(8, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 400
    index.add(x)
    query = x[:3]
    _, plain = index.search(query, 20)
    available = np.ones(400, dtype=bool)
    available[plain[:, :5].ravel()] = False
    params, _selector = masked_search_params(index, np.packbits(available, bitorder="little"))
    _, masked = index.search(query, 20, params=params)
    for row in range(3):
        assert not set(masked[row]) & set(np.flatnonzero(~available))
        expected = [r for r in plain[row] if available[r]]
        assert list(masked[row][: len(expected)]) == expected


# -- the follower ----------------------------------------------------------------------------------------------
class FakeSource:
    """A live catalog held in memory; ``fail`` makes the next reads raise, as a Redis outage would."""

    def __init__(self, state: list[LiveItem]) -> None:
        self.state = list(state)
        self.changes: list[LiveItem] = []
        self.fail = False
        self.cond = threading.Condition()

    def bootstrap(self) -> list[LiveItem]:
        if self.fail:
            raise ConnectionError("Redis unreachable")
        return list(self.state)

    def poll(self, block_ms: int = 100) -> list[LiveItem]:
        with self.cond:
            if not self.changes:
                self.cond.wait(block_ms / 1000)
            if self.fail:
                raise ConnectionError("Redis unreachable")
            out, self.changes = self.changes, []
            return out

    def publish(self, item: LiveItem) -> None:
        with self.cond:
            self.changes.append(item)
            self.cond.notify_all()


def wait_for(condition: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


def test_follower_bootstraps_before_returning_then_applies_changes_and_survives_outages() -> None:
    source = FakeSource([added(N + 1), LiveItem("e2", 2, False, 1)])
    catalog = LiveCatalog(CatalogSnapshot.of_export(export_rows()))
    follower = catalog.follow(lambda: source, block_ms=20, retry_s=0.05)
    try:
        snap = catalog.snapshot  # already there when follow() returns: the first request sees it
        assert snap.n_items == N + 1 and not snap.servable(np.array([2]))[0]
        assert catalog.follow(lambda: source, 20, 0.05) is follower  # one follower per process
        source.publish(added(N + 2))
        assert wait_for(lambda: catalog.snapshot.n_items == N + 2)
        source.fail = True
        assert wait_for(lambda: follower.stats.errors >= 2)
        assert catalog.snapshot.n_items == N + 2  # the last snapshot keeps serving
        source.fail = False
        source.publish(LiveItem("new-8", N + 2, False, 9))
        assert wait_for(lambda: not catalog.snapshot.servable(np.array([N + 2]))[0])
        assert follower.stats.last_error == "" and follower.stats.batches >= 2
    finally:
        catalog.close()
    assert not follower._thread.is_alive()


def test_follower_that_cannot_connect_at_start_serves_the_export_and_catches_up() -> None:
    source = FakeSource([added(N + 1)])
    source.fail = True
    catalog = LiveCatalog(CatalogSnapshot.of_export(export_rows()))
    follower = CatalogFollower(catalog, lambda: source, block_ms=20, retry_s=0.05)
    follower.start()
    try:
        assert catalog.snapshot.n_items == N and follower.stats.errors == 1
        source.fail = False
        assert wait_for(lambda: catalog.snapshot.n_items == N + 1)  # bootstrapped once reachable
    finally:
        follower.stop()


# -- the reference pipeline on a real export -----------------------------------------------------------------
@pytest.fixture
def pipeline(export_dir: Path) -> ReferencePipeline:
    """The reference pipeline with no store and no follower: entries are applied directly."""
    config = make_config(export_dir, DEAD_REDIS, None)
    serving = config.serving.model_copy(
        update={"bloom_enabled": False, "features_enabled": False, "live_catalog_enabled": False}
    )
    return ReferencePipeline(StageConfig(**{**config.model_dump(), "serving": serving}))


def test_reference_returns_an_added_item_and_drops_an_unavailable_one(pipeline: ReferencePipeline) -> None:
    export = pipeline.export
    catalog = export_catalog(export)
    assert catalog.follower is None
    n = export.metadata.n_items
    request = RecommendRequest(user_id=export.id_maps.user_ids[3], k=10, timestamp_ms=1_764_000_000_000)
    space = pipeline.run(request_arrays([request]))
    query = space[QUERY.name][0]
    before = pipeline.recommend(request).items
    # An item whose vector matches the query far better than any other, with the content of the top item.
    top = export.item_index[before[0]] - 1
    items = export.items
    big = float(np.linalg.norm(items.embeddings, axis=1).max()) * 10
    vec = LiveVectors(query * big, items.dense[top], items.text[top], items.image[top])
    category = int(items.category_idx[top])
    catalog.apply([LiveItem("brand-new", n + 1, True, 1, category, vec)])
    retrieved = pipeline.stage("retrieval").run({QUERY.name: query[None, :]})[CANDIDATES.name][0]
    assert retrieved[0] == n + 1
    name = export.id_maps.categories[category]
    in_category = RecommendRequest(
        request.user_id, 100, timestamp_ms=request.timestamp_ms, options=RecommendOptions(include_categories=(name,))
    )
    assert "brand-new" in pipeline.recommend(in_category).items
    assert pipeline.recommend(request).items != [] and before[0] in pipeline.recommend(request).items
    catalog.apply([LiveItem(before[0], top + 1, False, 2), LiveItem("brand-new", n + 1, False, 2)])
    after = pipeline.recommend(request).items
    assert before[0] not in after and "brand-new" not in after and len(after) == 10
    assert "brand-new" not in pipeline.recommend(in_category).items
    catalog.apply([LiveItem(before[0], top + 1, True, 3)])
    assert pipeline.recommend(request).items == before


# -- the popularity fallback ---------------------------------------------------------------------------------
def test_fallback_with_an_unreachable_live_catalog_answers_at_once_unfiltered(export_root: Path) -> None:
    plain = PopularityFallback(export_root).recommend(RecommendRequest(user_id=None, k=5), "test").items
    availability = LiveAvailability(DEAD_REDIS, retry_s=0.05)
    try:
        start = time.monotonic()
        got = PopularityFallback(export_root, availability=availability).recommend(RecommendRequest(None, 5), "t")
        assert got.items == plain and time.monotonic() - start < 1.0
    finally:
        availability.close()


def test_fallback_leaves_out_items_the_live_catalog_made_unavailable(
    stack: Any, export_root: Path, unique_id: str
) -> None:
    import redis

    prefix = f"test-{unique_id}"  # nothing else follows these keys
    directory = art.current_dir(export_root)
    maps = art.load_id_maps(directory)
    client = redis.Redis.from_url(stack.redis.effective_url)
    keys = LiveKeys.for_version(directory.name, prefix)
    writer = LiveCatalogWriter(client, keys, len(maps.item_ids))
    availability = LiveAvailability(stack.redis.effective_url, prefix=prefix)
    fallback = PopularityFallback(export_root, availability=availability)
    request = RecommendRequest(user_id=None, k=5)
    try:
        before = fallback.recommend(request, "test").items
        index = {item: i + 1 for i, item in enumerate(maps.item_ids)}
        writer.publish(
            [LiveItem(before[0], index[before[0]], False, 1), LiveItem(before[2], index[before[2]], False, 1)]
        )
        assert wait_for(lambda: before[0] not in fallback.recommend(request, "test").items)
        after = fallback.recommend(request, "test").items
        assert len(after) == 5 and after[:3] == [before[1], before[3], before[4]]
        writer.publish([LiveItem(before[0], index[before[0]], True, 2), LiveItem(before[2], index[before[2]], True, 2)])
        assert wait_for(lambda: fallback.recommend(request, "test").items == before)
    finally:
        availability.close()
        client.delete(keys.state, keys.changes, keys.index, keys.next_index)
        client.close()


def test_follower_on_redis_skips_an_entry_it_cannot_decode_and_keeps_the_rest(stack: Any, unique_id: str) -> None:
    """One corrupt entry in the live catalog must not stop a serving process from taking the others, neither
    when it starts nor while it follows."""
    import redis

    client = redis.Redis.from_url(stack.redis.effective_url)
    keys = LiveKeys.for_version(f"v-{unique_id}")
    writer = LiveCatalogWriter(client, keys, n_export_items=N)
    catalog = LiveCatalog(CatalogSnapshot.of_export(export_rows()))
    try:
        client.hset(keys.state, "broken", b"\x00\x00\x00\x05{oops")
        writer.publish([added(N + 1)])
        catalog.follow(lambda: redis_source(stack.redis.effective_url, keys, 2.0, 20), block_ms=20, retry_s=0.05)
        assert catalog.snapshot.n_items == N + 1  # bootstrapped past the broken entry
        client.xadd(keys.changes, {"item": "broken"})
        writer.publish([LiveItem("e2", 2, False, 5)])
        assert wait_for(lambda: not catalog.snapshot.servable(np.array([2]))[0])
        writer.publish([added(N + 2)])
        assert wait_for(lambda: catalog.snapshot.n_items == N + 2)  # still following
    finally:
        catalog.close()
        client.delete(keys.state, keys.changes, keys.index, keys.next_index)
        client.close()


@pytest.mark.parametrize(
    ("chosen", "ranked", "added", "slots", "k", "want"),
    [
        ([0, 1, 2], [0, 1, 2, 3, 4], [3], 1, 3, [0, 1, 3]),  # the best added item takes the last place
        ([0, 1, 2], [0, 1, 2, 4, 3], [3, 4], 1, 3, [0, 1, 4]),  # the better ranked of two
        ([0, 1, 2], [0, 1, 2, 3, 4], [3, 4], 2, 3, [0, 3, 4]),
        ([0, 3, 2], [0, 3, 2, 1, 4], [3, 4], 1, 3, [0, 3, 2]),  # one is in already: nothing changes
        ([0, 1], [0, 1, 3], [3], 1, 3, [0, 1, 3]),  # room left: appended
        ([0, 1, 2], [0, 1, 2], [], 1, 3, [0, 1, 2]),  # no added candidate
        ([3, 4], [3, 4, 5], [3, 4, 5], 3, 2, [3, 4]),  # only added items chosen: none replaced
    ],
)
def test_new_item_slots_put_the_best_ranked_added_candidates_in_the_last_places(
    chosen: list[int], ranked: list[int], added: list[int], slots: int, k: int, want: list[int]
) -> None:
    from serving.pipeline.stages.rerank import promote_added

    mask = np.isin(np.arange(8), added)
    assert promote_added(chosen, ranked, mask, slots, k) == want


def test_an_added_item_ranked_below_the_top_k_is_shown_in_its_new_item_slot_in_retrieval_order() -> None:
    """The slot goes to the added item retrieval put first (its content matched the user best), not to the one
    the ranker, blind to an unknown id, scores higher."""
    catalog = catalog_with_added()
    cand = np.array([[1, 2, 3, N + 2, N + 1]], dtype=np.int64)
    options = np.array([[RecommendOptions().to_json().encode()]], dtype=object)
    inputs = {
        FILTERED_CANDIDATES.name: cand,
        RANK_SCORES.name: np.array([[5.0, 4.0, 3.0, -1.0, 0.5]], np.float32),  # the added items rank last
        ITEM_CATEGORY.name: np.array([[1, 2, 1, 2, 2]], np.int64),
        K.name: np.array([[3]], np.int32),
        OPTIONS.name: options,
        CONTEXT_FLAGS.name: np.zeros((1, 1), np.int32),
        FEATURE_FLAGS.name: np.zeros((1, 1), np.int32),
        BLOOM_FLAGS.name: np.zeros((1, 1), np.int32),
    }
    plain = RerankStage(catalog, "v1", new_item_slots=0).run(inputs)
    assert list(plain[ITEM_IDS.name][0]) == [b"e1", b"e2", b"e3"]
    explored = RerankStage(catalog, "v1", new_item_slots=1).run(inputs)
    assert list(explored[ITEM_IDS.name][0]) == [b"e1", b"e2", b"new-8"]  # retrieved before new-7, ranked below it

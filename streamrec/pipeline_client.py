"""Client of the ``recommend`` Triton ensemble, shared by the sync API and the streaming worker.

One gRPC channel per client (connection reuse), timeouts from :class:`TritonSettings`, typed results, and a
flagged popular-items fallback computed from the live export when Triton cannot answer — callers never see a
stream of errors. A short circuit breaker skips Triton for ``retry_after_s`` after a failure so a dead server
costs nothing per request.

The tensors below (:data:`PIPELINE_INPUTS`, :data:`PIPELINE_OUTPUTS`, the ``MS_<STAGE>`` timings) are the
pipeline's contract with its clients; ``serving/`` renders the model repository from the same specs and adds
its stages' internal tensors. This module imports no app folder.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import artifacts as art
from streamrec.errors import ArtifactError
from streamrec.settings import PathsSettings, TritonSettings

log = logging.getLogger(__name__)


# -- the pipeline contract ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """One named tensor between stages or between the client and the pipeline: Triton wire type and dims
    without the batch dimension (-1: variable). ``serving/`` renders Triton model configs from these."""

    name: str
    dtype: str  # Triton wire type: BYTES, INT32, INT64, FP32
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> type[np.generic]:
        return _NUMPY_TYPES[self.dtype]

    def array(self, rows: list[Any]) -> np.ndarray:
        """A batch of this tensor from one row (list) per request."""
        return np.array(rows, dtype=self.numpy_dtype)


_NUMPY_TYPES: dict[str, type[np.generic]] = {
    "BYTES": np.object_,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP32": np.float32,
}

#: Inputs of the pipeline (the ensemble's and the fused model's), one row per request.
USER_ID = TensorSpec("USER_ID", "BYTES", (1,))  # empty = anonymous
DEVICE = TensorSpec("DEVICE", "BYTES", (1,))
TIMESTAMP_MS = TensorSpec("TIMESTAMP_MS", "INT64", (1,))
K = TensorSpec("K", "INT32", (1,))
OPTIONS = TensorSpec("OPTIONS", "BYTES", (1,))  # JSON of RecommendOptions
#: Outputs of the pipeline; item ids are padded with b"" when fewer than K items qualify.
ITEM_IDS = TensorSpec("ITEM_IDS", "BYTES", (-1,))
ITEM_SCORES = TensorSpec("ITEM_SCORES", "FP32", (-1,))
MODEL_VERSION = TensorSpec("MODEL_VERSION", "BYTES", (1,))
FLAGS = TensorSpec("FLAGS", "INT32", (1,))  # bit mask of FLAG_BITS
PIPELINE_INPUTS: tuple[TensorSpec, ...] = (USER_ID, DEVICE, TIMESTAMP_MS, K, OPTIONS)
PIPELINE_OUTPUTS: tuple[TensorSpec, ...] = (ITEM_IDS, ITEM_SCORES, MODEL_VERSION, FLAGS)
#: Every stage also answers its own time in milliseconds as ``MS_<STAGE>`` (FP32 [1]).
TIMING_PREFIX = "MS_"


def timing_tensor(stage: str) -> TensorSpec:
    return TensorSpec(f"{TIMING_PREFIX}{stage.upper()}", "FP32", (1,))


def timing_stage(tensor_name: str) -> str | None:
    """The stage a timing output belongs to (``MS_QUERY_TOWER`` -> ``query_tower``); None for other tensors."""
    return tensor_name[len(TIMING_PREFIX) :].lower() if tensor_name.startswith(TIMING_PREFIX) else None


# -- flags ------------------------------------------------------------------------------------------------
FEATURES_UNAVAILABLE = "features_unavailable"  # Feast unreachable: user stream features were zeros
BLOOM_UNAVAILABLE = "bloom_unavailable"  # Bloom store unreachable: seen items were not excluded
UNKNOWN_USER = "unknown_user"  # user id not in the export: treated like an anonymous user by the models
SAMPLED = "sampled"  # temperature sampling was used (not deterministic)
POPULARITY_FALLBACK = "popularity_fallback"  # Triton unavailable: popular items from the export
MODEL_UNAVAILABLE = "model_unavailable"  # no export to fall back on either
FLAG_BITS: dict[str, int] = {FEATURES_UNAVAILABLE: 1, BLOOM_UNAVAILABLE: 2, UNKNOWN_USER: 4, SAMPLED: 8}


def decode_flags(mask: int) -> list[str]:
    return [name for name, bit in FLAG_BITS.items() if mask & bit]


@dataclass(frozen=True)
class RecommendOptions:
    """Per-request filters and rerank knobs (None: the server's default)."""

    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    exclude_items: tuple[str, ...] = ()
    diversity: float | None = None  # 0 = pure relevance, 1 = pure diversity (MMR)
    max_per_category: int | None = None  # business rule; 0 = no cap
    temperature: float | None = None  # > 0: softmax sampling instead of deterministic top-K
    seed: int | None = None  # sampling seed (deterministic sampling when set)

    def to_json(self) -> str:
        data: dict[str, Any] = {}
        for key in ("include_categories", "exclude_categories", "exclude_items"):
            if getattr(self, key):
                data[key] = list(getattr(self, key))
        for key in ("diversity", "max_per_category", "temperature", "seed"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> RecommendOptions:
        """Parse what :meth:`to_json` wrote; raises ValueError naming the field on anything else."""
        data = json.loads(raw or b"{}")
        if not isinstance(data, dict):
            raise ValueError("options: expected a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"options: unknown field {sorted(unknown)[0]}")
        kwargs: dict[str, Any] = {}
        for key in ("include_categories", "exclude_categories", "exclude_items"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"options.{key}: expected a list of strings")
            kwargs[key] = tuple(value)
        for key, kind in (("diversity", float), ("temperature", float), ("max_per_category", int), ("seed", int)):
            value = data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
                raise ValueError(f"options.{key}: expected a number")
            kwargs[key] = kind(value)
        return cls(**kwargs)


@dataclass(frozen=True)
class RecommendRequest:
    user_id: str | None  # None or "": anonymous
    k: int = 10
    device: str = "unknown"
    timestamp_ms: int | None = None  # None: now
    options: RecommendOptions = field(default_factory=RecommendOptions)
    timings: bool = False


@dataclass(frozen=True)
class RecommendResult:
    items: list[str]
    scores: list[float]
    model_version: str
    flags: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: str = "triton"  # triton | fallback | reference
    fallback_reason: str | None = None


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


# -- popularity fallback -------------------------------------------------------------------------------------
@dataclass
class _PopularSnapshot:
    version: str
    item_ids: list[str]
    categories: list[str]
    category_idx: np.ndarray  # int64 [n_items]
    order: np.ndarray  # item rows, most popular first


class LiveAvailability:
    """Which items the live catalog (:mod:`streamrec.catalog.live`) holds as unavailable, for the popularity
    fallback: a thread follows one export version's live catalog, as the serving processes do, keeping only
    item id -> available. The first call for a version waits up to ``first_wait_s`` for the whole catalog;
    Redis unreachable: the last known set (empty at first), retried every ``retry_s``."""

    def __init__(
        self,
        redis_url: str,
        prefix: str | None = None,  # None: the catalog sync's default
        block_ms: int = 100,
        retry_s: float = 2.0,
        first_wait_s: float = 1.0,
    ) -> None:
        self.redis_url, self.prefix, self.block_ms = redis_url, prefix, block_ms
        self.retry_s, self.first_wait_s = retry_s, first_wait_s
        self._version = ""
        self._unavailable: frozenset[str] = frozenset()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def unavailable(self, version: str) -> frozenset[str]:
        with self._lock:
            if version != self._version:
                self._follow(version)
        self._ready.wait(self.first_wait_s)
        return self._unavailable

    def _follow(self, version: str) -> None:
        self.close()
        self._version, self._unavailable = version, frozenset()
        self._ready, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, args=(version, self._ready, self._stop), daemon=True)
        self._thread.start()

    def _run(self, version: str, ready: threading.Event, stop: threading.Event) -> None:
        import redis

        from streamrec.catalog.live import DEFAULT_PREFIX, LiveCatalogReader, LiveKeys

        client = redis.Redis.from_url(
            self.redis_url, socket_timeout=5.0 + self.block_ms / 1000.0, socket_connect_timeout=self.first_wait_s
        )
        reader = LiveCatalogReader(client, LiveKeys.for_version(version, self.prefix or DEFAULT_PREFIX))
        available: dict[str, bool] = {}
        while not stop.is_set():
            try:
                entries = reader.poll(self.block_ms)
            except Exception as exc:  # Redis down, a bad entry: keep the last set
                log.debug("live availability of %s not updated: %s", version, exc)
                ready.set()
                stop.wait(self.retry_s)
                continue
            available.update((e.item_id, e.available) for e in entries)
            if entries and not stop.is_set():
                self._unavailable = frozenset(i for i, a in available.items() if not a)
            ready.set()
        client.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None


class PopularityFallback:
    """Popular items of the live export, with the request's filters applied; reloads when CURRENT changes.
    With ``availability``, items the live catalog holds as unavailable are left out too."""

    def __init__(
        self, export_root: Path, check_every_s: float = 5.0, availability: LiveAvailability | None = None
    ) -> None:
        self.export_root = Path(export_root)
        self.check_every_s = check_every_s
        self.availability = availability
        self._snapshot: _PopularSnapshot | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _load(self) -> _PopularSnapshot | None:
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._checked < self.check_every_s:
                return self._snapshot
            self._checked = time.monotonic()
            try:
                version = art.read_current(self.export_root)
                if self._snapshot is not None and self._snapshot.version == version:
                    return self._snapshot
                directory = art.version_dir(self.export_root, version)
                meta = art.load_metadata(directory)
                maps = art.load_id_maps(directory, meta)
                arrays = art.load_item_arrays(directory, meta)
            except ArtifactError as exc:
                log.warning("popularity fallback has no export: %s", exc)
                return self._snapshot
            order = np.argsort(-arrays.popularity, kind="stable")
            self._snapshot = _PopularSnapshot(version, maps.item_ids, maps.categories, arrays.category_idx, order)
            return self._snapshot

    def recommend(self, request: RecommendRequest, reason: str) -> RecommendResult:
        snap = self._load()
        if snap is None:
            return RecommendResult([], [], "", [POPULARITY_FALLBACK, MODEL_UNAVAILABLE], {}, "fallback", reason)
        opts = request.options
        include = {snap.categories.index(c) for c in opts.include_categories if c in snap.categories}
        exclude = {snap.categories.index(c) for c in opts.exclude_categories if c in snap.categories}
        excluded_items = set(opts.exclude_items)
        if self.availability is not None:
            excluded_items |= self.availability.unavailable(snap.version)
        items: list[str] = []
        for row in snap.order:
            cat = int(snap.category_idx[row])
            if (opts.include_categories and cat not in include) or cat in exclude:
                continue
            item = snap.item_ids[row]
            if item in excluded_items:
                continue
            items.append(item)
            if len(items) >= request.k:
                break
        # Scores decrease with rank so that consumers ordering by score keep the popularity order.
        scores = [1.0 / (rank + 1) for rank in range(len(items))]
        return RecommendResult(items, scores, snap.version, [POPULARITY_FALLBACK], {}, "fallback", reason)


# -- Triton gRPC clients --------------------------------------------------------------------------------------
def request_arrays(requests: Sequence[RecommendRequest]) -> dict[str, np.ndarray]:
    """The pipeline's input tensors for a batch of requests (batch dimension first)."""
    stamps = [r.timestamp_ms if r.timestamp_ms is not None else now_ms() for r in requests]
    return {
        USER_ID.name: USER_ID.array([[(r.user_id or "").encode()] for r in requests]),
        DEVICE.name: DEVICE.array([[r.device.encode()] for r in requests]),
        TIMESTAMP_MS.name: TIMESTAMP_MS.array([[ts] for ts in stamps]),
        K.name: K.array([[r.k] for r in requests]),
        OPTIONS.name: OPTIONS.array([[r.options.to_json().encode()] for r in requests]),
    }


def build_inputs(request: RecommendRequest, infer_input: Any) -> list[Any]:
    """tritonclient InferInput objects for one request (``infer_input`` is grpc's or grpc.aio's class)."""
    arrays = request_arrays([request])
    inputs = []
    for spec in PIPELINE_INPUTS:
        tensor = infer_input(spec.name, list(arrays[spec.name].shape), spec.dtype)
        tensor.set_data_from_numpy(arrays[spec.name])
        inputs.append(tensor)
    return inputs


def parse_result(result: Any, timing_outputs: Sequence[str]) -> RecommendResult:
    ids = result.as_numpy(ITEM_IDS.name)
    scores = result.as_numpy(ITEM_SCORES.name)
    items, values = [], []
    for item, score in zip(ids.reshape(-1), scores.reshape(-1), strict=True):
        if item:
            items.append(item.decode() if isinstance(item, bytes) else str(item))
            values.append(float(score))
    version = result.as_numpy(MODEL_VERSION.name).reshape(-1)[0]
    flags = decode_flags(int(result.as_numpy(FLAGS.name).reshape(-1)[0]))
    timings = {}
    for name in timing_outputs:
        value = result.as_numpy(name)
        stage = timing_stage(name)
        if value is not None and stage is not None:
            timings[stage] = float(value.reshape(-1)[0])
    return RecommendResult(
        items, values, version.decode() if isinstance(version, bytes) else str(version), flags, timings
    )


class _Breaker:
    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self.open_until = 0.0
        self.last_error = ""

    def allow(self) -> bool:
        return time.monotonic() >= self.open_until

    def trip(self, error: str) -> None:
        self.open_until = time.monotonic() + self.retry_after_s
        self.last_error = error


class _ClientBase:
    """What the sync and asyncio clients share: settings, fallback, breaker, output names, failure handling."""

    def __init__(
        self,
        grpc_module: Any,
        settings: TritonSettings | None,
        export_root: Path | None,
        retry_after_s: float,
        availability: LiveAvailability | None = None,
    ) -> None:
        self.settings = settings or TritonSettings.load()
        self._grpc = grpc_module
        self._client = grpc_module.InferenceServerClient(self.settings.effective_grpc_url, verbose=False)
        root = export_root or PathsSettings.load().export_root
        self.fallback = PopularityFallback(root, availability=availability)
        self._breaker = _Breaker(retry_after_s)
        self._timing_outputs: list[str] | None = None

    @property
    def model(self) -> str:
        return self.settings.ensemble_model

    def _metadata_kwargs(self) -> dict[str, Any]:
        return {"as_json": True, "client_timeout": self.settings.request_timeout_s}

    def _remember_timings(self, meta: dict[str, Any]) -> list[str]:
        self._timing_outputs = [o["name"] for o in meta["outputs"] if timing_stage(o["name"]) is not None]
        return self._timing_outputs

    def _infer_args(self, request: RecommendRequest, timing_outputs: list[str]) -> dict[str, Any]:
        outputs = [
            self._grpc.InferRequestedOutput(n) for n in (*(spec.name for spec in PIPELINE_OUTPUTS), *timing_outputs)
        ]
        return {
            "model_name": self.model,
            "inputs": build_inputs(request, self._grpc.InferInput),
            "outputs": outputs,
            "client_timeout": self.settings.request_timeout_s,
        }

    def _open_circuit_answer(self, request: RecommendRequest) -> RecommendResult | None:
        if self._breaker.allow():
            return None
        return self.fallback.recommend(request, f"Triton unavailable: {self._breaker.last_error}")

    def _failed(self, request: RecommendRequest, exc: Exception) -> RecommendResult:
        # InferenceServerException, grpc errors, timeouts: all degrade the same way.
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        log.warning("Triton inference failed, serving popular items: %s", reason)
        self._breaker.trip(reason)
        self._timing_outputs = None
        return self.fallback.recommend(request, f"Triton unavailable: {reason}")


class PipelineClient(_ClientBase):
    """Synchronous client (thread-safe: one channel shared by all threads)."""

    def __init__(
        self,
        settings: TritonSettings | None = None,
        export_root: Path | None = None,
        retry_after_s: float = 1.0,
        availability: LiveAvailability | None = None,
    ) -> None:
        import tritonclient.grpc as grpcclient

        super().__init__(grpcclient, settings, export_root, retry_after_s, availability)

    def _timings(self) -> list[str]:
        if self._timing_outputs is None:
            return self._remember_timings(self._client.get_model_metadata(self.model, **self._metadata_kwargs()))
        return self._timing_outputs

    def recommend(self, request: RecommendRequest) -> RecommendResult:
        if (answer := self._open_circuit_answer(request)) is not None:
            return answer
        try:
            timing_outputs = self._timings() if request.timings else []
            return parse_result(self._client.infer(**self._infer_args(request, timing_outputs)), timing_outputs)
        except Exception as exc:
            return self._failed(request, exc)

    def ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(self.model, client_timeout=self.settings.request_timeout_s))
        except Exception:
            return False

    def close(self) -> None:
        self._client.close()


class AsyncPipelineClient(_ClientBase):
    """asyncio client (FastAPI, the Faust worker): same behaviour as :class:`PipelineClient`."""

    def __init__(
        self,
        settings: TritonSettings | None = None,
        export_root: Path | None = None,
        retry_after_s: float = 1.0,
        availability: LiveAvailability | None = None,
    ) -> None:
        import tritonclient.grpc.aio as aioclient

        super().__init__(aioclient, settings, export_root, retry_after_s, availability)

    async def _timings(self) -> list[str]:
        if self._timing_outputs is None:
            meta = await self._client.get_model_metadata(self.model, **self._metadata_kwargs())
            return self._remember_timings(meta)
        return self._timing_outputs

    async def recommend(self, request: RecommendRequest) -> RecommendResult:
        if (answer := self._open_circuit_answer(request)) is not None:
            return answer
        try:
            timing_outputs = await self._timings() if request.timings else []
            result = await self._client.infer(**self._infer_args(request, timing_outputs))
            return parse_result(result, timing_outputs)
        except Exception as exc:
            return self._failed(request, exc)

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_model_ready(self.model, client_timeout=self.settings.request_timeout_s))
        except Exception:
            return False

    async def close(self) -> None:
        await self._client.close()

"""Serving settings: pipeline and model repository (``STREAMREC_SERVING_``), HTTP API (``STREAMREC_API_``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from streamrec.settings import ComponentSettings


class ServingSettings(ComponentSettings):
    """The recommendation pipeline, its stages and the Triton model repository built for it."""

    section: ClassVar[str] = "serving"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_SERVING_")

    retrieval_candidates: int = Field(300, ge=1, le=5000, description="Items FAISS retrieves per request (top N).")
    default_k: int = Field(10, ge=1, le=100, description="Items returned when a request does not say.")
    max_k: int = Field(100, ge=1, le=1000, description="Largest k a request may ask for.")
    diversity: float = Field(
        0.0, ge=0, le=1, description="Default MMR weight of diversity (0 = pure relevance, deterministic top-K)."
    )
    mmr_pool: int = Field(50, ge=1, description="Reranking considers the best max(mmr_pool, 3k) ranked items.")
    max_per_category: int = Field(0, ge=0, description="Default business rule: at most this many items per category.")
    temperature: float = Field(0.0, ge=0, description="Default softmax sampling temperature; 0 = deterministic.")
    new_item_slots: int = Field(
        1,
        ge=0,
        le=100,
        description=(
            "Cold-start exploration: up to this many items added to the live catalog since the export, retrieved "
            "for the request but ranked below its top k (no learned id, no popularity yet), take the last places "
            "of the answer, the best-retrieved first; 0: off."
        ),
    )
    new_item_candidates: int = Field(
        10,
        ge=0,
        le=1000,
        description=(
            "Retrieval keeps at least this many of the request's best-scoring available items added to the live "
            "catalog since the export among its top N, in place of its lowest-scoring export items (an embedding "
            "computed from content can score below learned ones, so the ranker and the new-item slots would "
            "rarely see it otherwise); 0: added items compete by score only."
        ),
    )
    features_enabled: bool = Field(
        True, description="Read user stream features from Feast (STREAMREC_FEAST_*; off: zeros, flagged)."
    )
    bloom_enabled: bool = Field(True, description="Exclude seen items with the Bloom filters (off: flagged).")
    store_timeout_s: float = Field(0.1, gt=0, description="Socket timeout of the Bloom check's Redis calls.")
    store_retry_s: float = Field(2.0, gt=0, description="After a store failure, pass through this long, then retry.")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads per stage instance.")
    live_catalog_enabled: bool = Field(
        True,
        description=(
            "Follow the live catalog of the served export version in Redis: added items become retrievable and "
            "unavailable ones are masked in place (off: the export's items only, all available)."
        ),
    )
    live_catalog_block_ms: int = Field(
        100, ge=1, le=10_000, description="Longest wait of one read of the live catalog's change stream (XREAD BLOCK)."
    )
    live_catalog_timeout_s: float = Field(
        5.0, gt=0, description="Socket timeout of the live catalog's reads, on top of the blocking wait."
    )
    layout: Literal["fused", "ensemble"] = Field(
        "fused",
        description=(
            "fused: one python-backend model runs every stage in one process, without per-stage IPC hops (meets "
            "the API latency target on 2 cores); ensemble: one python-backend model per stage joined by a Triton "
            "ensemble (stages batch, scale and are inspected apart)."
        ),
    )
    instance_kind: Literal["cpu", "gpu"] = Field(
        "cpu",
        description=(
            "Triton instance kind of the stages that run models (query tower, retrieval, ranker) and of the fused "
            "model; the numpy stages always run on CPU instances."
        ),
    )
    instance_count: int = Field(1, ge=1, description="Triton instances per stage.")
    max_batch_size: int = Field(16, ge=1, description="Triton max_batch_size of the ensemble and its stages.")
    batch_delay_us: int = Field(
        0, ge=0, description="Dynamic batching queue delay of every stage; 0 batches only what is already queued."
    )
    reload_grace_s: float = Field(
        1.0, ge=0, description="After switching the ensemble, wait this long before unloading the old stages."
    )
    load_timeout_s: float = Field(180.0, gt=0, description="Model-control load request timeout.")


class ApiSettings(ComponentSettings):
    """The HTTP API (``streamrec api``)."""

    section: ClassVar[str] = "api"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_API_")

    host: str = Field("127.0.0.1", description="Address uvicorn binds.")
    port: int = Field(8080, ge=1, le=65535, description="Port uvicorn binds.")
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description=(
            'Stored hashes of the accepted X-API-Key values (JSON list of "sha256:<hex>" or "pbkdf2_sha256:...", '
            "made with `python -m streamrec.security hash-api-key`); plaintext entries are refused; masked."
        ),
    )
    auth_disabled: bool = Field(False, description="Serve without API keys; must be set explicitly.")
    key_header: str = Field("X-API-Key", description="Header carrying the API key.")
    max_body_bytes: int = Field(65_536, ge=1024, description="Larger request bodies are refused (413).")
    max_exclude_ids: int = Field(500, ge=0, description="Most explicit exclude ids one request may carry.")
    log_level: str = Field("warning", description="uvicorn log level.")

"""``/healthz`` (liveness), ``/readyz`` (Triton, Redis, Feast reachable) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.api.dependencies import ApiContext, get_context, get_services
from serving.api.models import Readiness
from serving.api.services import Services

router = APIRouter(tags=["operations"])


def _first_line(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: Triton, Redis and Feast reachable",
    responses={503: {"model": Readiness, "description": "A dependency is unreachable; `checks` says which."}},
)
async def readyz(services: Services = Depends(get_services)) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in services.checks.items():
        try:
            await check()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {_first_line(exc)}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Text format."}},
)
async def prometheus(context: ApiContext = Depends(get_context)) -> Response:
    return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)

"""Errors of the HTTP API: every rejection is a 4xx whose body names the field and the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.api.models import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed request (body is not JSON, ...)."},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
    413: {"model": ErrorResponse, "description": "Body too large."},
    422: {"model": ErrorResponse, "description": "A field failed validation; `field` names it."},
}


class ApiError(Exception):
    def __init__(self, status: int, field: str, reason: str, error: str = "invalid_request") -> None:
        self.status, self.field, self.reason, self.error = status, field, reason, error
        super().__init__(f"{field}: {reason}")


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query")]
    return ".".join(parts) or "<body>"


def error_body(status: int, field: str, reason: str, error: str, errors: list[dict[str, str]] | None = None) -> Any:
    body = {"error": error, "field": field, "reason": reason, "errors": errors or [{"field": field, "reason": reason}]}
    return JSONResponse(body, status_code=status)


def validation_errors(errors: list[Any]) -> tuple[int, list[dict[str, str]]]:
    """Pydantic errors -> (status, [{field, reason}]): 400 for a body that is not JSON, else 422."""
    out = []
    status = 422
    for err in errors:
        kind = err.get("type", "")
        loc = err.get("loc", ())
        if kind == "json_invalid":
            status = 400
            out.append({"field": "<body>", "reason": f"not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}"})
            continue
        reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            reason = "unknown field"
        elif kind == "missing":
            reason = "field required"
        elif kind == "string_pattern_mismatch":
            reason = "must be 1-128 characters of A-Z a-z 0-9 . _ : @ + - / (no spaces or braces)"
        out.append({"field": _field(loc), "reason": reason})
    return status, out


def install_error_handlers(app: FastAPI, count: Callable[[str, int], None]) -> None:
    """``count(path, status)`` is called for every rejection (the request counter)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        count(request.url.path, exc.status)
        return error_body(exc.status, exc.field, exc.reason, exc.error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, errors = validation_errors(list(exc.errors()))
        count(request.url.path, status)
        return error_body(status, errors[0]["field"], errors[0]["reason"], "invalid_request", errors)


class BodyLimitMiddleware:
    """Refuses bodies whose Content-Length is over the limit before they are read (a plain ASGI middleware:
    Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and streams)."""

    def __init__(self, app: ASGIApp, max_bytes: int, refuse: Callable[[str, str], Response]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    length = value.decode("latin-1")
                    if length.isdigit() and int(length) > self.max_bytes:
                        await self.refuse(scope["path"], length)(scope, receive, send)
                        return
        await self.app(scope, receive, send)

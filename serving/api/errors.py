"""Errors of the HTTP API: every rejection is a 4xx whose body names the field and the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.models import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed request (body is not JSON, ...)."},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
    413: {"model": ErrorResponse, "description": "Body too large."},
    422: {"model": ErrorResponse, "description": "A field failed validation; `field` names it."},
    429: {
        "model": ErrorResponse,
        "description": "This API key's request rate is exceeded; retry after `Retry-After` seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    },
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        field: str,
        reason: str,
        error: str = "invalid_request",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.field, self.reason, self.error = status, field, reason, error
        self.headers = headers or {}
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


#: The metric label of a request that matched no route (never the raw path: label values must stay bounded).
UNMATCHED = "<unmatched>"


def endpoint_label(app: Any, scope: Scope) -> str:
    """The route template a request matches (``/v1/items/{item_id}``), else :data:`UNMATCHED`: metric labels
    never carry sender data."""
    route = scope.get("route")
    if route is not None and isinstance(getattr(route, "path", None), str):
        return str(route.path)
    templates = getattr(app.state, "endpoint_templates", None)
    if templates is None:  # built once, from the documented paths
        templates = [(compile_path(path)[0], path) for path in app.openapi().get("paths", {})]
        app.state.endpoint_templates = templates
    path = scope.get("path", "")
    for regex, template in templates:
        if regex.match(path):
            return str(template)
    return UNMATCHED


_HTTP_ERRORS = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI, count: Callable[[str, int], None]) -> None:
    """``count(endpoint, status)`` is called for every rejection (the request counter)."""

    def label(request: Request) -> str:
        return endpoint_label(app, request.scope)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        count(label(request), exc.status)
        response: JSONResponse = error_body(exc.status, exc.field, exc.reason, exc.error)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, errors = validation_errors(list(exc.errors()))
        count(label(request), status)
        return error_body(status, errors[0]["field"], errors[0]["reason"], "invalid_request", errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        # FastAPI's own rejections (a body it cannot parse, an unknown path or method) in the documented
        # ErrorResponse shape, not ``{"detail": ...}``.
        count(label(request), exc.status_code)
        field = "<body>" if exc.status_code in (400, 413) else "<path>"
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400:
            detail = "not valid JSON (nested too deeply, a number too long, or not UTF-8)"
        response = error_body(exc.status_code, field, detail, _HTTP_ERRORS.get(exc.status_code, "http_error"))
        if exc.headers:
            response.headers.update(exc.headers)
        return response


class BodyLimitMiddleware:
    """Refuses bodies over the limit before the app sees them (a plain ASGI middleware: Starlette's
    ``@app.middleware("http")`` wraps every request in extra tasks and streams).

    A Content-Length over the limit is refused before anything is read. A body without one (chunked) is read
    here up to the limit and refused as soon as it passes it; a body within the limit is replayed to the app.
    ``refuse(scope, size)`` builds the 413 answer (``size``: the declared length, or "more than <limit>")."""

    def __init__(self, app: ASGIApp, max_bytes: int, refuse: Callable[[Scope, str], Response]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value.decode("latin-1")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self.refuse(scope, declared)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)  # no body expected; the SSE stream keeps receive() to itself
            return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self.refuse(scope, f"more than {self.max_bytes}")(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = iter(buffered)

        async def replayed() -> Message:
            for message in replay:
                return message
            return await receive()

        await self.app(scope, replayed, send)

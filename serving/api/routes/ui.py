"""The web page (``/ui``, static files from the package) and the small reads it needs: its configuration, a few
known users, item details and images."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from serving.api.dependencies import ApiContext, get_context, require_key
from serving.api.errors import ERRORS, ApiError
from serving.api.models import ErrorResponse
from streamrec.schemas.events import ID_PATTERN, Device, EventType

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_ITEMS_PER_CALL = 200

page = APIRouter(include_in_schema=False)
data = APIRouter(tags=["web page"], dependencies=[Depends(require_key)], responses=ERRORS)


def only_query(*allowed: str) -> Any:
    """A dependency refusing query parameters other than ``allowed`` (FastAPI ignores unknown ones)."""

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params.keys()) - set(allowed))
        if unknown:
            raise ApiError(422, unknown[0], "unknown query parameter")

    return Depends(check)


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)


@page.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@page.get("/ui/")
async def ui_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@page.get("/ui/config.json")
async def ui_config(context: ApiContext = Depends(get_context)) -> dict[str, Any]:
    """What the page needs before it has a key: whether one is needed, and the request limits."""
    settings = context.settings
    return {
        "auth_required": not settings.auth_disabled,
        "key_header": settings.key_header,
        "default_k": context.limits.default_k,
        "max_k": context.limits.max_k,
        "devices": [d.value for d in Device],
        "event_types": [e.value for e in EventType],
        "live": context.hub is not None,
        "reconnect_ms": context.ui.reconnect_ms,
    }


@data.get(
    "/v1/users/known",
    summary="A few users of the live model export (for pickers and demos)",
    dependencies=[only_query()],
)
async def known_users(context: ApiContext = Depends(get_context)) -> dict[str, Any]:
    catalog = await context.catalog()
    return {"users": catalog.known_users, "model_version": catalog.model_version, "catalog": catalog.source}


@data.get(
    "/v1/items",
    summary="Title, category, price and whether an image exists, for the given item ids",
    dependencies=[only_query("ids")],
)
async def items(
    ids: Annotated[str, Query(description="Comma-separated item ids.", min_length=1)],
    context: ApiContext = Depends(get_context),
) -> dict[str, Any]:
    wanted = [i for i in ids.split(",") if i]
    if len(wanted) > MAX_ITEMS_PER_CALL:
        raise ApiError(422, "ids", f"{len(wanted)} ids; at most {MAX_ITEMS_PER_CALL} per call")
    catalog = await context.catalog()
    return {"items": [asdict(info) for info in catalog.describe(wanted)]}


@data.get(
    "/v1/items/image",
    summary="The item's catalog image (PNG)",
    response_class=Response,
    dependencies=[only_query("item_id")],
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}, "description": "PNG."},
        404: {"model": ErrorResponse, "description": "The catalog has no image for this item."},
    },
)
async def item_image(
    item_id: Annotated[str, Query(pattern=ID_PATTERN)], context: ApiContext = Depends(get_context)
) -> Response:
    image = (await context.catalog()).images.get(item_id)
    if image is None:
        raise ApiError(404, "item_id", "no image for this item in the catalog", "not_found")
    return Response(image, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

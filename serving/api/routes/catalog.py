"""Catalog writes: ``PUT``/``DELETE /v1/items/{item_id}``, ``POST /v1/items`` (up to 500), ``PUT
/v1/users/{user_id}``. Validated by the core's catalog contract and written to the compacted topics keyed by id;
``202`` only once Kafka acknowledged."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from serving.api.delivery import DeliveryFailed, QueueFull
from serving.api.dependencies import ApiContext, get_context, get_services, require_key
from serving.api.errors import ERRORS, ApiError
from serving.api.models import ErrorResponse, component_ref
from serving.api.routes.events import json_number
from serving.api.services import Services
from streamrec.catalog.codec import CatalogKind, validate_item, validate_record
from streamrec.catalog.models import CatalogItem, ItemTombstone, UserProfile
from streamrec.errors import InvalidEventError
from streamrec.schemas.events import ID_PATTERN

MAX_ITEMS_PER_CALL = 500
PAYLOAD = "<payload>"

router = APIRouter(
    tags=["catalog"],
    dependencies=[Depends(require_key)],
    responses={
        **ERRORS,
        503: {"model": ErrorResponse, "description": "Kafka did not acknowledge the write; retry (Retry-After)."},
    },
)
PathId = Annotated[str, Path(pattern=ID_PATTERN, description="The record's id.")]


class CatalogAccepted(BaseModel):
    accepted: int
    ids: list[str]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _json(request: Request, limit: int) -> Any:
    raw = await request.body()
    if len(raw) > limit:
        raise ApiError(413, "<body>", f"body is {len(raw)} bytes; the limit is {limit}", "too_large")
    try:
        return json.loads(raw, parse_float=json_number)
    except ValueError as exc:
        raise ApiError(400, PAYLOAD, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, PAYLOAD, "not valid JSON: nested too deeply") from None


def _with_path_id(data: Any, id_field: str, path_id: str, where: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiError(422, where or PAYLOAD, "expected a JSON object")
    if "deleted" in data:
        raise ApiError(422, f"{where}deleted", "a delete is DELETE /v1/items/{item_id}, not a field")
    if id_field in data and data[id_field] != path_id:
        raise ApiError(422, f"{where}{id_field}", f"does not match the id in the path ({path_id!r})")
    return data  # the body carries its id too (the record as it lands on the topic); missing: 422 by name


async def _put_one(
    kind: CatalogKind, path_id: str, request: Request, context: ApiContext, services: Services
) -> CatalogAccepted:
    """One record from the body, keyed by the id in the path; 202 once Kafka acknowledged it."""
    data = _with_path_id(await _json(request, context.settings.max_body_bytes), kind.id_field, path_id)
    try:
        record = validate_record(kind, data)
    except InvalidEventError as exc:
        raise ApiError(422, exc.field, exc.reason) from None
    return await _write(services, kind, [record])


async def _write(services: Services, kind: CatalogKind, records: list[Any]) -> CatalogAccepted:
    if services.write_catalog is None:
        raise ApiError(503, PAYLOAD, "catalog writes are not configured in this API", "unavailable")
    try:
        await services.write_catalog(kind, records)
    except QueueFull as exc:
        raise ApiError(503, PAYLOAD, str(exc), "unavailable", headers={"Retry-After": str(exc.retry_after_s)}) from None
    except DeliveryFailed as exc:
        raise ApiError(503, PAYLOAD, f"Kafka did not acknowledge the write: {exc.reason}", "unavailable") from None
    return CatalogAccepted(accepted=len(records), ids=[r.key for r in records])


@router.put(
    "/v1/items/{item_id}",
    status_code=202,
    response_model=CatalogAccepted,
    summary="Create or replace one item (last updated_at wins)",
    openapi_extra=_body(component_ref(CatalogItem)),
)
async def put_item(
    item_id: PathId,
    request: Request,
    context: ApiContext = Depends(get_context),
    services: Services = Depends(get_services),
) -> CatalogAccepted:
    return await _put_one(CatalogKind.ITEMS, item_id, request, context, services)


@router.delete(
    "/v1/items/{item_id}",
    status_code=202,
    response_model=CatalogAccepted,
    summary="Delete one item: writes its tombstone (an older upsert replayed later does not bring it back)",
)
async def delete_item(item_id: PathId, services: Services = Depends(get_services)) -> CatalogAccepted:
    record = ItemTombstone(item_id=item_id, deleted=True, updated_at=datetime.now(UTC))
    return await _write(services, CatalogKind.ITEMS, [record])


@router.post(
    "/v1/items",
    status_code=202,
    response_model=CatalogAccepted,
    summary=f"Create or replace up to {MAX_ITEMS_PER_CALL} items",
    openapi_extra=_body(
        {"type": "array", "items": component_ref(CatalogItem), "minItems": 1, "maxItems": MAX_ITEMS_PER_CALL}
    ),
)
async def post_items(
    request: Request, context: ApiContext = Depends(get_context), services: Services = Depends(get_services)
) -> CatalogAccepted:
    data = await _json(request, context.settings.max_body_bytes)
    if not isinstance(data, list):
        raise ApiError(422, PAYLOAD, "expected a JSON array of items")
    if not data:
        raise ApiError(422, PAYLOAD, "empty list of items")
    if len(data) > MAX_ITEMS_PER_CALL:
        raise ApiError(422, PAYLOAD, f"{len(data)} items; at most {MAX_ITEMS_PER_CALL} per call")
    records = []
    for i, item in enumerate(data):
        if isinstance(item, dict) and "deleted" in item:
            raise ApiError(422, f"[{i}].deleted", "a delete is DELETE /v1/items/{item_id}, not a field")
        try:
            records.append(validate_item(item))
        except InvalidEventError as exc:
            raise ApiError(422, f"[{i}].{exc.field}", exc.reason) from None
    return await _write(services, CatalogKind.ITEMS, records)


@router.put(
    "/v1/users/{user_id}",
    status_code=202,
    response_model=CatalogAccepted,
    summary="Create or replace one user profile (last updated_at wins)",
    openapi_extra=_body(component_ref(UserProfile)),
)
async def put_user(
    user_id: PathId,
    request: Request,
    context: ApiContext = Depends(get_context),
    services: Services = Depends(get_services),
) -> CatalogAccepted:
    return await _put_one(CatalogKind.USERS, user_id, request, context, services)

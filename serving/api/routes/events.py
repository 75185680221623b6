"""``POST /v1/events``: interaction events (one object or a list) validated and produced to Kafka."""

from __future__ import annotations

import asyncio
import inspect
import json

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from serving.api.delivery import DeliveryFailed, QueueFull
from serving.api.dependencies import ApiContext, get_context, get_services, require_key
from serving.api.errors import ERRORS, ApiError
from serving.api.models import ErrorResponse, EventsAccepted, component_ref
from serving.api.services import Services
from streamrec.errors import InvalidEventError
from streamrec.schemas.codec import PAYLOAD, first_error, validate_interaction
from streamrec.schemas.events import InteractionEvent

MAX_EVENTS_PER_CALL = 500
ENDPOINT = "/v1/events"

router = APIRouter(tags=["events"], dependencies=[Depends(require_key)], responses=ERRORS)


def json_number(text: str) -> float | int:
    """JSON has one number type: ``1700000000000.0`` is the integer the schema's ``integer`` admits."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


async def deliver(services: Services, events: list[InteractionEvent]) -> None:
    """Every event written and acknowledged by Kafka, else a 503 naming the reason. A retry after a 503 may
    write some events twice; the stream deduplicates them by ``event_id``."""
    pending = [result for result in map(services.send_event, events) if inspect.isawaitable(result)]
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, QueueFull):
            raise ApiError(
                503, PAYLOAD, str(outcome), "unavailable", headers={"Retry-After": str(outcome.retry_after_s)}
            )
    for outcome in outcomes:
        if isinstance(outcome, DeliveryFailed):
            raise ApiError(503, PAYLOAD, f"Kafka did not acknowledge the events: {outcome.reason}", "unavailable")
        if isinstance(outcome, BaseException):
            raise outcome


@router.post(
    ENDPOINT,
    status_code=202,
    response_model=EventsAccepted,
    responses={503: {"model": ErrorResponse, "description": "Kafka did not acknowledge; retry (Retry-After)."}},
    summary=f"Ingest interaction events (one object or an array of up to {MAX_EVENTS_PER_CALL}) into Kafka",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            component_ref(InteractionEvent),
                            {
                                "type": "array",
                                "items": component_ref(InteractionEvent),
                                "minItems": 1,
                                "maxItems": MAX_EVENTS_PER_CALL,
                            },
                        ]
                    }
                }
            },
        }
    },
)
async def post_events(
    request: Request, context: ApiContext = Depends(get_context), services: Services = Depends(get_services)
) -> EventsAccepted:
    limit = context.settings.max_body_bytes
    raw = await request.body()  # chunked bodies carry no Content-Length for the middleware to check
    if len(raw) > limit:
        raise ApiError(413, "<body>", f"body is {len(raw)} bytes; the limit is {limit}")
    try:
        data = json.loads(raw, parse_float=json_number)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of thousands of digits
        raise ApiError(400, PAYLOAD, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, PAYLOAD, "not valid JSON: nested too deeply") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ApiError(422, PAYLOAD, "empty list of events")
    if len(items) > MAX_EVENTS_PER_CALL:
        raise ApiError(422, PAYLOAD, f"{len(items)} events; at most {MAX_EVENTS_PER_CALL} per call")
    events = []
    for i, item in enumerate(items):
        try:
            events.append(validate_interaction(item, max_future_skew=context.max_future_skew_s))
        except InvalidEventError as exc:
            where = f"[{i}].{exc.field}" if isinstance(data, list) else exc.field
            raise ApiError(422, where, exc.reason) from None
        except ValidationError as exc:  # pragma: no cover - validate_interaction converts these
            err = first_error(exc)
            raise ApiError(422, err.field, err.reason) from None
    await deliver(services, events)
    context.metrics.events.inc(len(events))
    context.metrics.count(ENDPOINT, 202)
    return EventsAccepted(accepted=len(events), event_ids=[e.event_id for e in events])

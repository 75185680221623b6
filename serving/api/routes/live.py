"""``GET /v1/recommendations/stream``: a user's pushed recommendation lists as Server-Sent Events.

Events: ``status`` ({"kafka": "connecting" | "ok" | "unavailable: ...", "subscribers": n}) when the shared
consumer's state changes, ``recommendations`` (a recommendation message, plus ``received_at_ms``) for every list
pushed for the user, ``error`` before the stream ends; a comment line keeps an idle stream open.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from serving.api.dependencies import ApiContext, get_context, require_key
from serving.api.errors import ERRORS, ApiError
from serving.api.live import HubFull, RecommendationHub
from streamrec.schemas.events import ID_PATTERN

ENDPOINT = "/v1/recommendations/stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}

router = APIRouter(tags=["recommendations"], dependencies=[Depends(require_key)], responses=ERRORS)


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def stream(hub: RecommendationHub, user_id: str, keepalive_s: float, reconnect_ms: int) -> AsyncIterator[str]:
    yield f"retry: {reconnect_ms}\n\n"
    numbers = itertools.count(1)
    try:
        async with hub.subscribe(user_id) as sub:
            yield sse("status", hub.status())
            while True:
                try:
                    update = await asyncio.wait_for(sub.queue.get(), keepalive_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield sse(update.kind, update.data, next(numbers) if update.kind == "recommendations" else None)
    except HubFull as exc:  # filled up between the check and the start of the stream
        yield sse("error", {"error": "too_many_streams", "reason": str(exc)})


@router.get(
    ENDPOINT,
    summary="A user's pushed recommendations, live (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream."}, 503: {}},
)
async def recommendation_stream(
    user_id: Annotated[str, Query(pattern=ID_PATTERN, description="Whose lists to stream.")],
    context: ApiContext = Depends(get_context),
) -> StreamingResponse:
    hub = context.hub
    if hub is None:
        raise ApiError(503, "<service>", "no live stream in this deployment (no Kafka feed)", "unavailable")
    if not hub.has_room():
        raise ApiError(
            503, "<service>", f"{hub.subscribers} live streams open; the limit is {hub.max_subscribers}", "busy"
        )
    ui = context.ui
    context.metrics.count(ENDPOINT, 200)
    return StreamingResponse(
        stream(hub, user_id, ui.keepalive_s, ui.reconnect_ms), media_type="text/event-stream", headers=SSE_HEADERS
    )

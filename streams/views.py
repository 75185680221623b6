"""The worker's web views: ``/metrics`` (Prometheus) and, only where ``STREAMREC_STREAMS_WEB_DEBUG_ENABLED``
is set, ``/debug/tasks`` (where every coroutine waits).

Imported when the app is built (it subclasses Faust's ``web.View``, so it imports Faust).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from faust import web

from streams.faust_compat import OffsetBook
from streams.metrics import PROMETHEUS_CONTENT_TYPE, WorkerMetrics

if TYPE_CHECKING:
    from faust.types import AppT

#: How deep ``/debug/tasks`` follows a task's await chain.
MAX_AWAIT_DEPTH = 24


class MetricsView(web.View):  # type: ignore[misc]
    metrics: ClassVar[WorkerMetrics]

    async def get(self, request: web.Request) -> web.Response:
        return self.bytes(self.metrics.exposition(), content_type=PROMETHEUS_CONTENT_TYPE)


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """``function:line`` of each coroutine/async generator ``task`` is awaiting, outermost first."""
    chain: list[str] = []
    awaitable: Any = task.get_coro()
    while awaitable is not None and len(chain) < MAX_AWAIT_DEPTH:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    return chain


class TasksView(web.View):  # type: ignore[misc]
    """Where every coroutine of the worker waits, and the consumer's offsets: what to look at when offsets
    stop moving."""

    async def get(self, request: web.Request) -> web.Response:
        out = [f"{task.get_name()}: {' -> '.join(await_chain(task))}" for task in asyncio.all_tasks()]
        book = OffsetBook(self.app.consumer)
        committed = book.committed()
        for tp, acked in sorted(book.acked().items()):
            head = sorted(acked)[:3]
            out.append(
                f"ACKED {tp.topic}/{tp.partition}: committed={committed.get(tp)} n_acked={len(acked)} first={head}"
            )
        unacked = sorted((m.tp.topic, m.tp.partition, m.offset, m.refcount) for m in book.in_flight())
        out.append(f"UNACKED {len(unacked)}: {unacked[:20]}")
        return self.bytes("\n".join(sorted(out)).encode(), content_type="text/plain")


def register_views(app: AppT, metrics: WorkerMetrics, debug: bool = False) -> None:
    """``/metrics`` always; ``/debug/tasks`` (coroutine frames, offsets: unauthenticated) only with ``debug``."""
    app.page("/metrics")(type("WorkerMetricsView", (MetricsView,), {"metrics": metrics}))
    if debug:
        app.page("/debug/tasks")(TasksView)

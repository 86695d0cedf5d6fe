"""What the provider tests share: run a provider's events, pick text and the done, subscribe."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeAlias, TypeVar

from aiohttp import web
from reactivex import Observable

from rxllm.events import DoneEvent, StreamEvent, TokenEvent, ToolCallDeltaEvent, ToolCallEvent
from rxllm.provider import Provider
from rxllm.request import StreamRequest


async def run(
    provider: Provider[Any], request: StreamRequest | str, **fields: Any
) -> tuple[list[StreamEvent], Exception | None]:
    """Every event the provider yields, and the error that ended the stream (if any)."""
    events: list[StreamEvent] = []
    try:
        async for event in provider.events(provider.request(request, **fields)):
            events.append(event)
    except Exception as error:
        return events, error
    return events, None


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


def done_of(events: list[StreamEvent]) -> DoneEvent:
    """The single done event, which must be the last event."""
    dones = [e for e in events if isinstance(e, DoneEvent)]
    assert len(dones) == 1
    assert events[-1] is dones[0]
    return dones[0]


async def collect(stream: Observable[StreamEvent]) -> list[StreamEvent]:
    """Subscribe and gather the events until completion (errors raise)."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[list[StreamEvent]] = loop.create_future()
    events: list[StreamEvent] = []

    def on_error(error: Exception) -> None:
        if not finished.done():
            finished.set_exception(error)

    def on_completed() -> None:
        if not finished.done():
            finished.set_result(events)

    stream.subscribe(on_next=events.append, on_error=on_error, on_completed=on_completed)
    return await finished


_T = TypeVar("_T")
Handler: TypeAlias = Callable[[web.Request], Awaitable[web.StreamResponse]]


def of_type(events: list[StreamEvent], kind: type[_T]) -> list[_T]:
    """The events of one kind, in order (``of_type(events, ToolCallEvent)``)."""
    return [e for e in events if isinstance(e, kind)]


def calls_of(events: list[StreamEvent]) -> list[ToolCallEvent]:
    """The complete tool calls, in order."""
    return of_type(events, ToolCallEvent)


def deltas_of(events: list[StreamEvent], index: int | None = None) -> list[ToolCallDeltaEvent]:
    """The tool-call fragments, in order (of the call ``index`` only, when given)."""
    deltas = of_type(events, ToolCallDeltaEvent)
    return deltas if index is None else [d for d in deltas if d.index == index]


async def serve(route: str, handler: Handler) -> tuple[web.AppRunner, str]:
    """``handler`` for POST ``route`` on 127.0.0.1, a free port: (the runner to clean up,
    the base URL). For replaying captures and misbehaving servers to a provider."""
    app = web.Application()
    app.router.add_post(route, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def sse_replay(data: bytes) -> Handler:
    """A handler that answers any request with ``data`` verbatim as an event stream."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(data)
        await response.write_eof()
        return response

    return handler


def gemini_sse(events: Iterable[Mapping[str, Any]]) -> bytes:
    """Captured Gemini events (JSON lines) in their wire form: ``data: <json>\\r\\n\\r\\n``."""
    return b"".join(
        f"data: {json.dumps(e, ensure_ascii=False, separators=(',', ': '))}\r\n\r\n".encode()
        for e in events
    )

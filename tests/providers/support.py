"""What the provider tests share: run a provider's events, pick text and the done, subscribe."""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import Observable

from rxllm.events import DoneEvent, StreamEvent, TokenEvent
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

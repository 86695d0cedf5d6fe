"""Test sources for the bridge: async iterators that record what happened to them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from rxllm import DoneEvent, FinishReason, StreamEvent, TokenEvent, Usage


def done(model: str = "test-model", provider: str = "test") -> DoneEvent:
    return DoneEvent(
        usage=Usage(prompt_tokens=3, completion_tokens=2),
        finish_reason=FinishReason.STOP,
        model=model,
        provider=provider,
    )


def reply(*texts: str) -> list[StreamEvent]:
    """Token events for ``texts`` followed by a done event."""
    return [*(TokenEvent(text) for text in texts), done()]


@dataclass
class Recorder:
    """What a recording source saw: how often it started, how far it got, how it ended."""

    starts: int = 0
    pulled: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    loops: list[asyncio.AbstractEventLoop] = field(default_factory=list)
    cancelled: bool = False
    closed: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    """Set when the source's ``finally`` ran (thread-safe, so sync tests can wait on it)."""


class EventSource:
    """A factory for the bridge: each call starts one recorded run.

    Yields ``events`` in order; then, if ``hang``, waits forever (until cancelled),
    else raises ``error`` if given, else ends.
    """

    def __init__(
        self,
        events: list[StreamEvent],
        *,
        hang: bool = False,
        error: Exception | None = None,
    ) -> None:
        self.events = events
        self.hang = hang
        self.error = error
        self.record = Recorder()

    def __call__(self) -> AsyncIterator[StreamEvent]:
        return self._run()

    async def _run(self) -> AsyncIterator[StreamEvent]:
        record = self.record
        record.starts += 1
        record.threads.append(threading.current_thread())
        record.loops.append(asyncio.get_running_loop())
        try:
            for event in self.events:
                record.pulled += 1
                yield event
            if self.hang:
                await asyncio.Event().wait()
            if self.error is not None:
                raise self.error
        except asyncio.CancelledError:
            record.cancelled = True
            raise
        finally:
            record.closed = True
            record.finished.set()


class EndlessSource:
    """Yields numbered tokens forever, counting pulls; always ready, like a fast network."""

    def __init__(self) -> None:
        self.pulled = 0
        self.closed = threading.Event()

    def __call__(self) -> AsyncIterator[StreamEvent]:
        return self._run()

    async def _run(self) -> AsyncIterator[StreamEvent]:
        try:
            while True:
                # One loop turn per read, as a socket read would take.
                await asyncio.sleep(0)
                self.pulled += 1
                yield TokenEvent(str(self.pulled))
        finally:
            self.closed.set()


async def wait_until_set(event: threading.Event) -> None:
    """Await a thread-safe flag without blocking the loop (bounded, as a safety net only)."""
    assert await asyncio.to_thread(event.wait, 10), "gave up waiting after 10 s"

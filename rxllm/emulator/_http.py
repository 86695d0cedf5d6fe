"""aiohttp plumbing shared by the HTTP dialects: SSE writing, disconnect tracking, faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._state import EmulatorState, RecordedRequest

__all__ = ["ClientGone", "SseStream", "json_response", "serve_stream"]


class ClientGone(Exception):
    """The client closed the connection while the emulator was still sending."""


def json_response(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(payload, ensure_ascii=False).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


class SseStream:
    """One streaming response. ``send`` raises :class:`ClientGone` when the client left."""

    def __init__(self, request: web.Request, record: RecordedRequest) -> None:
        self._request = request
        self._record = record
        self.response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )

    async def start(self, headers: dict[str, str] | None = None) -> None:
        if headers:
            self.response.headers.update(headers)
        await self.response.prepare(self._request)

    def _gone(self) -> bool:
        transport = self._request.transport
        return transport is None or transport.is_closing()

    async def send(self, data: bytes, events: int = 1) -> None:
        """Write ``data``, which holds ``events`` events."""
        if self._gone():
            raise ClientGone
        try:
            await self.response.write(data)
        except (ConnectionError, RuntimeError) as error:
            raise ClientGone from error
        self._record.events_sent += events

    async def flush(self, pending: list[bytes]) -> None:
        """Write the ``pending`` events in one write (each counted as sent), and empty the
        list: an unpaced stream is sent in a few writes, so that the emulator, not the
        client under test, is never the slow side."""
        if pending:
            data = b"".join(pending) if len(pending) > 1 else pending[0]
            count = len(pending)
            pending.clear()
            await self.send(data, count)

    async def stall(self) -> None:
        """Keep the connection open and send nothing until the client gives up."""
        # aiohttp signals a closed transport by no event (handler_cancellation covers most
        # cases; polling covers a half-closed socket), so look every 20 ms.
        while not self._gone():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        raise ClientGone

    def drop(self) -> None:
        """Cut the connection abruptly, mid-stream (no terminating chunk)."""
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    async def finish(self) -> None:
        await self.response.write_eof()


async def serve_stream(
    state: EmulatorState,
    record: RecordedRequest,
    request: web.Request,
    body: Callable[[SseStream], Awaitable[None]],
) -> web.StreamResponse:
    """Run ``body`` over an SSE response and record whether the client went away early."""
    stream = SseStream(request, record)
    disconnected = False
    try:
        await body(stream)
    except ClientGone:
        disconnected = True
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client disconnects (handler_cancellation).
        disconnected = True
        state.finish(record, disconnected=True)
        raise
    state.finish(record, disconnected=disconnected)
    return stream.response

"""The emulator's lifecycle: a start that fails leaves nothing running."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from rxllm.emulator import Emulator


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other listener holds (so binding the emulator's gRPC server to it fails)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


async def test_a_failed_start_stops_what_it_had_started(busy_port: int) -> None:
    emulator = Emulator(grpc_port=busy_port)
    with pytest.raises(RuntimeError, match="bind"):
        await emulator.start()
    assert emulator._runner is None, "the HTTP server kept running"
    assert emulator._xai is None


def test_a_failed_threaded_start_closes_its_loop_and_thread(
    busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    new_event_loop = asyncio.new_event_loop

    def recording_new_event_loop() -> asyncio.AbstractEventLoop:
        loops.append(new_event_loop())
        return loops[-1]

    monkeypatch.setattr(asyncio, "new_event_loop", recording_new_event_loop)
    emulator = Emulator(grpc_port=busy_port)
    with pytest.raises(RuntimeError, match="bind"), emulator:
        pass  # pragma: no cover

    assert emulator._runner is None, "the HTTP server kept running"
    assert len(loops) == 1
    assert loops[0].is_closed(), "the emulator's event loop was left open"
    assert emulator._thread is None
    assert emulator._thread_loop is None

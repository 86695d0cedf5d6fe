"""Gemini's raw path reads the body through rxllm's own framing: a transport failure
escaping the HTTP client between two reads still ends the stream as interrupted, after
the events the first read carried. (Replaces the test that broke the SDK's line reader,
which the provider no longer uses.)"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest

from rxllm import errors
from rxllm.emulator import Emulator
from rxllm.events import DoneEvent, StreamEvent, TokenEvent
from rxllm.providers._sse import SSEFramer
from rxllm.providers.gemini import GeminiProvider
from rxllm.request import StreamRequest
from rxllm.testing import EMULATOR_KEY


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] bad record mac"),
        anyio.BrokenResourceError(),
        httpx2.StreamClosed(),
    ],
    ids=type,
)
async def test_a_raw_transport_failure_between_reads_is_interrupted(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    from rxllm.providers import gemini as module

    body_reads = module._body_reads
    framed: list[int] = []

    async def breaking_reads(raw: Any) -> AsyncIterator[bytes]:
        reads = body_reads(raw)
        first = await reads.__anext__()
        framed.append(len(SSEFramer().feed(first)))
        yield first
        raise failure  # as a socket or TLS error escaping the HTTP client would

    monkeypatch.setattr(module, "_body_reads", breaking_reads)
    provider = GeminiProvider(api_key=EMULATOR_KEY, base_url=emulator.base_url("gemini"))
    events: list[StreamEvent] = []
    error: errors.RxllmError | None = None
    try:
        async for event in provider.events(StreamRequest(model="gemini-2.5-flash", prompt="Hi")):
            events.append(event)
    except errors.RxllmError as caught:
        error = caught
    finally:
        await provider.aclose()
    assert type(error) is errors.StreamInterruptedError
    assert error.__cause__ is failure
    assert not any(isinstance(e, DoneEvent) for e in events)
    # Every event of the first read reached the consumer before the failure.
    assert len([e for e in events if isinstance(e, TokenEvent)]) == framed[0]

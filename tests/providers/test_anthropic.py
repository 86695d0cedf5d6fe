"""AnthropicProvider through the official SDK against the emulator (and real captures)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import pytest
from aiohttp import web

from rxllm import errors
from rxllm.emulator import Emulator
from rxllm.emulator._content import tokenize
from rxllm.events import DoneEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent
from rxllm.providers.anthropic import AnthropicProvider
from rxllm.request import Message, StreamRequest
from rxllm.stream import LLMStream
from rxllm.testing import EMULATOR_KEY

from .support import serve, sse_replay

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
# anthropic 2.14 warns (DeprecationWarning) on claude-sonnet-4-5 and claude-opus-4-5.
MODEL = "claude-haiku-4-5"
TEXT = (
    "Hello! Here is a multilingual answer: café, naïve, Straße — 日本語のテキスト、中文字符 and "
    "한국어. Emoji: 🌍 👩\u200d💻 works; flag: 🇯🇵; combining: e\u0301 (é). Math: ∑ x² ≤ ∞."
)
PIECES = tokenize(TEXT)


def scripted(reply: str = TEXT, **knobs: object) -> str:
    extra = "".join(f",{k}={v}" for k, v in knobs.items())
    return f"{MODEL}~reply={urllib.parse.quote(reply, safe='')}{extra}"


@pytest.fixture
async def claude(emulator: Emulator) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(api_key=EMULATOR_KEY, base_url=emulator.base_url("anthropic"))
    yield provider
    await provider.aclose()


async def run(
    provider: AnthropicProvider, request: StreamRequest
) -> tuple[list[StreamEvent], Exception | None]:
    """Every event the provider yields, then the error it raised (if any)."""
    events: list[StreamEvent] = []
    try:
        async for event in provider.events(request):
            events.append(event)
    except Exception as error:  # the test inspects it
        return events, error
    return events, None


async def observe(stream: Any) -> tuple[list[StreamEvent], Exception | None]:
    """Subscribe to an Observable and wait for its end."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Exception | None] = loop.create_future()
    events: list[StreamEvent] = []

    def end(error: Exception | None) -> None:
        if not ended.done():
            ended.set_result(error)

    stream.subscribe(on_next=events.append, on_error=end, on_completed=lambda: end(None))
    return events, await asyncio.wait_for(ended, 10)


def text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


def done(events: list[StreamEvent]) -> DoneEvent:
    assert isinstance(events[-1], DoneEvent)
    assert sum(isinstance(e, DoneEvent) for e in events) == 1
    return events[-1]


# -- text, reasoning, usage, finish reasons -----------------------------------------------------


async def test_usage_is_normalized_and_matches_what_the_api_reported(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    request = claude.request("What is rxllm?", model=scripted(), system="Be brief.")
    result = await claude.complete(request)
    sdk = anthropic.AsyncAnthropic(
        base_url=emulator.base_url("anthropic"), api_key=EMULATOR_KEY, max_retries=0
    )
    try:
        raw = await sdk.messages.create(
            model=scripted(),
            max_tokens=100,
            system="Be brief.",
            messages=[{"role": "user", "content": "What is rxllm?"}],
        )
    finally:
        await sdk.close()
    assert result.usage.prompt_tokens == raw.usage.input_tokens > 0
    assert result.usage.completion_tokens == raw.usage.output_tokens == len(PIECES)
    assert result.usage.reasoning_tokens == 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + len(PIECES)
    assert result.usage.cost is not None  # claude-haiku-4-5 is priced in the catalog
    assert result.usage.cost > 0


async def test_reasoning_arrives_separately_before_the_text(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    events, error = await run(claude, claude.request("Think first", model=MODEL, reasoning=True))
    assert error is None
    kinds = [e.type for e in events]
    first_token = kinds.index("token")
    assert kinds[:first_token] == ["reasoning"] * first_token
    assert "reasoning" not in kinds[first_token:]
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningEvent))
    usage = done(events).usage
    assert reasoning.strip()
    assert reasoning not in text(events)
    assert usage.reasoning_tokens == len(tokenize(reasoning))
    assert usage.completion_tokens == usage.reasoning_tokens + len(tokenize(text(events)))
    body = emulator.requests[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    # The default max_tokens (4096), raised above the thinking budget so the answer has room.
    assert body["max_tokens"] == 4096 + 4096


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "budget", "sent_max"),
    [
        ("low", None, 1024, 4096),  # the default max_tokens leaves room for the answer
        ("high", None, 16384, 16384 + 4096),  # raised above the budget
        ("high", 2000, 1999, 2000),  # the budget stays below max_tokens
    ],
)
async def test_reasoning_effort_maps_to_a_thinking_budget(
    claude: AnthropicProvider,
    emulator: Emulator,
    reasoning: str,
    max_tokens: int | None,
    budget: int,
    sent_max: int,
) -> None:
    request = claude.request("Hi", model=MODEL, reasoning=reasoning, max_tokens=max_tokens)
    await claude.complete(request)
    body = emulator.requests[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == sent_max


async def test_reasoning_with_too_few_max_tokens_is_refused_before_sending(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    with pytest.raises(errors.InvalidRequestError, match="max_tokens above 1024"):
        await claude.complete("Hi", model=MODEL, reasoning=True, max_tokens=500)
    assert emulator.requests == []


async def test_stop_sequence_is_sent_and_ends_with_stop(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    events, _ = await run(claude, claude.request("Hi", model=scripted(), stop=("Straße",)))
    end = done(events)
    assert text(events) == TEXT[: TEXT.index("Straße")]
    assert end.finish_reason is FinishReason.STOP
    assert end.details["stop_reason"] == "stop_sequence"
    assert end.details["stop_sequence"] == "Straße"
    assert emulator.requests[-1].body["stop_sequences"] == ["Straße"]


async def test_request_mapping(claude: AnthropicProvider, emulator: Emulator) -> None:
    request = StreamRequest(
        model="claude-unknown-model",
        system="You are terse.",
        messages=(
            Message("system", "Answer in English."),
            Message("user", "Hi"),
            Message("assistant", "Hello."),
            Message("user", "Again"),
        ),
        temperature=0.3,
    )
    events, error = await run(claude, request)
    assert error is None
    body = emulator.requests[-1].body
    assert body["system"] == "You are terse.\n\nAnswer in English."
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"},
    ]
    assert body["max_tokens"] == 4096  # not in the catalog
    assert body["stream"] is True
    # API version 2026-10-21 (anthropic 2.x) has no sampling parameters: not sent, and said so.
    assert "temperature" not in body
    assert done(events).details["ignored"] == ("temperature",)
    assert emulator.requests[-1].headers["Authorization"] == f"Bearer {EMULATOR_KEY}"


async def test_request_options_reach_the_sdk_call(claude: AnthropicProvider) -> None:
    request = claude.request(
        "Hi", model=MODEL, options={"extra_headers": {"x-rxllm-emulator": "fault=overloaded"}}
    )
    with pytest.raises(errors.OverloadedError):
        await claude.complete(request)


async def test_a_parameter_create_turns_into_a_header_goes_through_create(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    request = claude.request("Hi", model=MODEL, options={"workspace_id": "wrk_1"})
    result = await claude.complete(request)
    assert result.text
    assert emulator.requests[-1].headers["anthropic-workspace-id"] == "wrk_1"
    assert "workspace_id" not in emulator.requests[-1].body


async def test_an_unknown_option_is_refused_before_anything_is_sent(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    request = claude.request("Hi", model=MODEL, options={"no_such_parameter": 1})
    with pytest.raises(errors.InvalidRequestError, match="refused the request"):
        await claude.complete(request)
    assert emulator.requests == []


# -- errors --------------------------------------------------------------------------------------


async def test_error_event_mid_stream_is_overloaded_after_the_tokens(
    claude: AnthropicProvider,
) -> None:
    events, error = await run(claude, claude.request("Hi", model=scripted(fault="error_event")))
    assert text(events) == "".join(PIECES[:3])
    assert isinstance(error, errors.OverloadedError)
    assert "overloaded_error" in str(error)


_MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
}
_FIRST_DELTA = {
    "type": "content_block_delta",
    "index": 0,
    "delta": {"type": "text_delta", "text": "Hello"},
}


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events
    )


async def test_a_connection_reset_mid_body_is_interrupted_after_the_tokens() -> None:
    async def reset_after_one_token(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
            + _sse(_MESSAGE_START, _FIRST_DELTA)
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # with linger 0: an RST, not a clean close

    server = await asyncio.start_server(reset_after_one_token, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = AnthropicProvider(api_key="k", base_url=f"http://127.0.0.1:{port}")
    try:
        events, error = await run(provider, provider.request("Hi", model=MODEL))
    finally:
        await provider.aclose()
        server.close()
        await server.wait_closed()
    assert text(events) == "Hello"
    assert type(error) is errors.StreamInterruptedError
    assert error.retryable


class _BreakingBody(httpx2.AsyncByteStream):
    """A response body that sends one token, then fails below httpx2's own error mapping."""

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield _sse(_MESSAGE_START, _FIRST_DELTA)
        raise self.failure


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] bad record mac"),
        anyio.EndOfStream(),
        anyio.BrokenResourceError(),
        httpx2.StreamClosed(),
    ],
    ids=type,
)
async def test_a_raw_transport_failure_mid_body_is_interrupted(failure: BaseException) -> None:
    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_BreakingBody(failure)
        )

    http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(respond))
    provider = AnthropicProvider(
        api_key="k", base_url="http://anthropic.test", http_client=http_client
    )
    try:
        events, error = await run(provider, provider.request("Hi", model=MODEL))
    finally:
        await provider.aclose()
        await http_client.aclose()
    assert text(events) == "Hello"
    assert type(error) is errors.StreamInterruptedError, repr(error)
    assert error.__cause__ is failure


# -- continuation ------------------------------------------------------------------------------


async def test_continued_stream_yields_exactly_the_rest(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    full = await claude.generate("Tell me a story", model=MODEL, reasoning=True)
    cut: LLMStream = claude.stream(
        "Tell me a story", model=f"{MODEL}~fault=drop,after=50", reasoning=True
    )
    events, error = await observe(cut)
    assert type(error) is errors.StreamInterruptedError
    partial = text(events)
    assert partial
    assert full.startswith(partial)
    assert len(partial) < len(full)
    rest_stream = cut.continued(partial)
    # the same model without the fault knob: what a retry would ask for
    rest_stream = LLMStream(claude, rest_stream.request.replace(model=MODEL))
    rest, error = await observe(rest_stream)
    assert error is None
    assert partial + text(rest) == full
    assert not any(isinstance(e, ReasoningEvent) for e in rest)
    body = emulator.requests[-1].body
    assert body["messages"][-1] == {"role": "assistant", "content": partial}
    assert "thinking" not in body  # a prefill cannot follow thinking: the API would refuse


# -- real captures through the provider --------------------------------------------------------


async def _serve_capture(name: str) -> tuple[web.AppRunner, str]:
    return await serve("/v1/messages", sse_replay((FIXTURES / name).read_bytes()))


async def _capture_events(name: str) -> tuple[list[StreamEvent], Exception | None]:
    runner, url = await _serve_capture(name)
    provider = AnthropicProvider(api_key="k", base_url=url)
    try:
        return await run(provider, provider.request("Hi", model=MODEL))
    finally:
        await provider.aclose()
        await runner.cleanup()


async def test_real_thinking_capture_maps_to_reasoning_tokens_and_usage() -> None:
    events, error = await _capture_events("anthropic_thinking.sse")
    assert error is None
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningEvent))
    assert reasoning == (
        "The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185"
    )
    assert text(events) == "925 ÷ 5 = 185"
    end = done(events)
    assert end.model == "claude-sonnet-4-5-20250929"
    assert end.usage.prompt_tokens == 69
    assert end.usage.completion_tokens == 53
    assert end.usage.reasoning_tokens == 0  # this capture predates output_tokens_details
    assert end.finish_reason is FinishReason.STOP
    assert end.details["id"] == "msg_01Y6V41gqPaKWEw7iPouH7iW"


async def test_real_midstream_error_capture_is_overloaded() -> None:
    events, error = await _capture_events("anthropic_error_midstream.sse")
    assert text(events).startswith("Hello! Here is a multilingual answer")
    assert isinstance(error, errors.OverloadedError)


async def test_real_truncated_capture_is_interrupted() -> None:
    events, error = await _capture_events("anthropic_truncated.sse")
    assert text(events).endswith("日本語のテキスト、中文")
    assert type(error) is errors.StreamInterruptedError
    assert "message_stop" in str(error)

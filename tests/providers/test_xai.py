"""``GrokProvider`` through the official xai-sdk against the emulator (and verbatim captures)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from reactivex import operators as ops

from rxllm import errors
from rxllm.emulator import Emulator, with_knobs
from rxllm.emulator._content import count_tokens, tokenize
from rxllm.events import DoneEvent, FinishReason, ReasoningEvent, TokenEvent
from rxllm.providers.grok import GrokProvider
from rxllm.request import Message, StreamRequest
from rxllm.testing import EMULATOR_KEY
from tests.fixtures.xai.replay import ReplayServer
from tests.providers.support import collect, done_of, run, text_of

MULTIBYTE = "Grüße aus Zürich — 日本語のテキスト, 한국어 and 🚀👋🏽 👨\u200d👩\u200d👧 façade."


@pytest_asyncio.fixture
async def provider(emulator: Emulator) -> AsyncIterator[GrokProvider]:
    p = GrokProvider(api_key=EMULATOR_KEY, base_url=emulator.xai_address)
    yield p
    await p.aclose()


def knobs(model: str = "grok-4", **values: object) -> str:
    """``model`` with emulator knobs appended (``grok-4~fault=drop,after=2``)."""
    return with_knobs(model, **values)


# -- mapping --------------------------------------------------------------------------------


async def test_request_fields_reach_the_api(provider: GrokProvider, emulator: Emulator) -> None:
    request = StreamRequest(
        model="grok-4",
        system="Be terse.",
        messages=(Message("user", "Earlier"), Message("assistant", "Noted")),
        prompt="Now",
        temperature=0.25,
        max_tokens=40,
        stop=("\n\n",),
    )
    await run(provider, request)

    body = emulator.requests[0].body
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["ROLE_SYSTEM", "ROLE_USER", "ROLE_ASSISTANT", "ROLE_USER"]
    assert [m["content"][0]["text"] for m in body["messages"]] == [
        "Be terse.",
        "Earlier",
        "Noted",
        "Now",
    ]
    assert body["temperature"] == 0.25
    assert body["max_tokens"] == 40
    assert body["stop"] == ["\n\n"]
    assert "reasoning_effort" not in body


async def test_reasoning_arrives_as_reasoning_events_before_the_text(
    provider: GrokProvider, emulator: Emulator
) -> None:
    events, error = await run(provider, "What is 2+2?", model="grok-3-mini", reasoning=True)
    assert error is None

    kinds = [e.type for e in events]
    assert kinds.index("token") > kinds.index("reasoning")
    assert "reasoning" not in kinds[kinds.index("token") :]
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningEvent))
    text = text_of(events)
    usage = done_of(events).usage
    # xAI counts reasoning apart from completion; rxllm's completion includes it.
    assert usage.reasoning_tokens == count_tokens(reasoning)
    assert usage.completion_tokens == count_tokens(text) + count_tokens(reasoning)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert emulator.requests[0].body["reasoning_effort"] == "EFFORT_LOW"


@pytest.mark.parametrize(
    ("model", "reasoning", "sent"),
    [
        ("grok-3-mini", "high", "EFFORT_HIGH"),
        ("grok-3-mini", "medium", "EFFORT_HIGH"),  # grok-3-mini knows only low and high
        ("grok-4.3", "medium", "EFFORT_MEDIUM"),
        ("grok-4", True, None),  # reasons by model choice; the parameter is an error there
        ("grok-4-fast-reasoning", "high", None),
    ],
)
async def test_reasoning_effort_only_where_the_model_takes_it(
    provider: GrokProvider, emulator: Emulator, model: str, reasoning: Any, sent: str | None
) -> None:
    _, error = await run(provider, "Q", model=model, reasoning=reasoning)
    assert error is None
    assert emulator.requests[0].body.get("reasoning_effort") == sent


async def test_stop_sequences_end_the_text(provider: GrokProvider) -> None:
    events, _ = await run(provider, "Hi", model=knobs(reply=MULTIBYTE), stop=("日本語",))
    assert text_of(events) == "Grüße aus Zürich — "
    assert done_of(events).finish_reason is FinishReason.STOP


def test_blocking_use_with_the_emulator_on_a_thread(emulator_thread: Emulator) -> None:
    provider = GrokProvider(api_key=EMULATOR_KEY, base_url=emulator_thread.xai_address)
    events = provider.stream("Hi", model=knobs(reply=MULTIBYTE)).pipe(ops.to_list()).run()
    assert text_of(events) == MULTIBYTE
    assert isinstance(events[-1], DoneEvent)


async def test_continued_yields_exactly_the_rest_of_the_text(provider: GrokProvider) -> None:
    stream = provider.stream("Tell me a story", model="grok-4")
    whole = text_of(await collect(stream))
    partial = "".join(tokenize(whole)[:9])

    rest = text_of(await collect(stream.continued(partial)))

    assert partial + rest == whole
    assert rest == whole[len(partial) :]


# -- errors ---------------------------------------------------------------------------------


async def test_the_error_reaches_subscribers_on_the_error_channel(provider: GrokProvider) -> None:
    with pytest.raises(errors.RateLimitedError) as raised:
        await collect(provider.stream("Hi", model=knobs(fault="rate_limited", retry_after=4)))
    assert raised.value.retry_after == 4.0
    assert raised.value.retryable


async def test_an_error_status_mid_stream_is_a_server_error_after_the_tokens(
    provider: GrokProvider,
) -> None:
    model = knobs(reply=MULTIBYTE, fault="error_event", after=2)
    events, error = await run(provider, "Hi", model=model)
    assert text_of(events) == "".join(tokenize(MULTIBYTE)[:2])
    assert isinstance(error, errors.ServerError)
    assert error.status == "INTERNAL"


async def test_disposing_a_flowing_stream_closes_the_call(
    provider: GrokProvider, emulator: Emulator
) -> None:
    first = asyncio.Event()
    subscription = provider.stream("Hi", model=knobs(tps=100, words=400)).subscribe(
        lambda _: first.set()
    )
    await asyncio.wait_for(first.wait(), 5)
    subscription.dispose()
    (record,) = await emulator.wait_for_disconnects_async(1)
    assert 0 < record.events_sent < 400


async def test_closing_the_event_iterator_early_closes_the_call(
    provider: GrokProvider, emulator: Emulator
) -> None:
    # No task is cancelled here: the iterator is closed (as ``async for ... break`` followed by
    # ``aclose`` does). xai-sdk would leave the call open; the provider cancels it.
    events = provider.events(provider.request("Hi", model=knobs(fault="stall", after=3)))
    async for event in events:
        assert isinstance(event, TokenEvent)
        break
    await events.aclose()  # type: ignore[attr-defined]
    (record,) = await emulator.wait_for_disconnects_async(1)
    assert record.disconnected


async def test_the_sdks_own_deadline_is_an_interrupted_error(emulator: Emulator) -> None:
    provider = GrokProvider(api_key=EMULATOR_KEY, base_url=emulator.xai_address, timeout=0.3)
    try:
        events, error = await run(provider, "Hi", model=knobs(fault="stall", after=2))
    finally:
        await provider.aclose()
    assert len([e for e in events if isinstance(e, TokenEvent)]) == 2
    assert type(error) is errors.StreamInterruptedError
    assert error.status == "DEADLINE_EXCEEDED"


async def test_a_cut_before_the_first_message_is_stream_interrupted(
    provider: GrokProvider,
) -> None:
    # The emulator ends the call as a proxy cutting the connection does:
    # UNAVAILABLE "Stream removed (Socket closed)". A server's own UNAVAILABLE is an
    # overload (test_each_fault_is_the_right_rxllm_error); grpc's transport message is not.
    events, error = await run(provider, "Hi", model=knobs(fault="drop", after=0))
    assert events == []
    assert type(error) is errors.StreamInterruptedError
    assert error.status == "UNAVAILABLE"
    assert "Socket closed" in str(error)
    assert error.retryable


async def test_a_connection_closed_before_the_first_message_is_stream_interrupted() -> None:
    # A real cut: the server accepts, speaks HTTP/2 (its SETTINGS frame), reads the
    # request and closes the socket before any response.
    async def accept_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await reader.read(65536)
        writer.write(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # an empty SETTINGS frame
        await writer.drain()
        await reader.read(65536)  # the client's preface, SETTINGS and request
        await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(accept_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = GrokProvider(api_key=EMULATOR_KEY, base_url=f"127.0.0.1:{port}")
    try:
        events, error = await run(provider, "Hi")
    finally:
        await provider.aclose()
        server.close()
        await server.wait_closed()
    assert events == []
    assert type(error) is errors.StreamInterruptedError, repr(error)
    assert error.status == "UNAVAILABLE"
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)


# -- real captures, served verbatim ---------------------------------------------------------


async def replayed(case: str, request: StreamRequest | str = "Hi", **fields: Any) -> Any:
    async with ReplayServer(case) as replay:
        provider = GrokProvider(api_key="xai-test-key", base_url=replay.address)
        try:
            return await run(provider, request, **fields)
        finally:
            await provider.aclose()


async def test_capture_max_len_usage_and_cost() -> None:
    events, error = await replayed("xai_max_len", model="grok-4-fast-reasoning")
    assert error is None
    done = done_of(events)
    assert done.finish_reason is FinishReason.LENGTH
    assert len([e for e in events if isinstance(e, TokenEvent)]) == 29
    # usage of the last chunk: completion 29 + reasoning 87 (xAI counts them apart)
    assert done.usage.prompt_tokens == 160
    assert done.usage.completion_tokens == 29 + 87
    assert done.usage.reasoning_tokens == 87
    assert done.usage.cost == pytest.approx(673500e-10)
    assert done.details["cached_prompt_tokens"] == 151
    assert done.model == "grok-4-fast-reasoning"


async def test_capture_encrypted_reasoning_counts_reasoning_without_text() -> None:
    events, error = await replayed("xai_encrypted_reasoning", model="grok-4-fast-reasoning")
    assert error is None
    assert not any(isinstance(e, ReasoningEvent) for e in events)
    assert text_of(events) == "29"
    usage = done_of(events).usage
    assert (usage.completion_tokens, usage.reasoning_tokens) == (154, 153)
    assert usage.total_tokens == 319  # the capture's own total_tokens


async def test_capture_reasoning_stream() -> None:
    events, error = await replayed("xai_reasoning", model="grok-4.3")
    assert error is None
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningEvent))
    assert reasoning.startswith('The question is "What is 2+2?"')
    assert text_of(events) == "**4**"
    assert done_of(events).usage.completion_tokens == 3 + 182


async def test_capture_retry_info_is_retry_after() -> None:
    _, error = await replayed("xai_rate_limited_retryinfo")
    assert isinstance(error, errors.RateLimitedError)
    assert error.retry_after == 7.0


async def test_capture_wrong_key_is_an_authentication_error() -> None:
    # api.x.ai answers a wrong key with INVALID_ARGUMENT and echoes it masked.
    _, error = await replayed("xai_bad_key")
    assert isinstance(error, errors.AuthenticationError)
    assert error.status == "INVALID_ARGUMENT"
    assert "te***ey" not in str(error)


async def test_capture_bad_request_is_invalid_request() -> None:
    _, error = await replayed("xai_bad_request")
    assert type(error) is errors.InvalidRequestError


async def test_capture_abort_after_chunks_delivers_them_first() -> None:
    events, error = await replayed("xai_abort")
    assert text_of(events).startswith("Grüße aus Zürich")
    assert isinstance(error, errors.ServerError)

"""``OpenAIProvider`` through the official SDK against the emulator (and verbatim captures)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import pytest_asyncio
from aiohttp import web

from rxllm import errors
from rxllm.emulator import Emulator, with_knobs
from rxllm.events import DoneEvent, FinishReason, ReasoningEvent, TokenEvent
from rxllm.providers.openai import OpenAIProvider
from rxllm.request import Message, StreamRequest
from rxllm.testing import EMULATOR_KEY
from tests.providers.support import collect, done_of, run, serve, sse_replay, text_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
MULTIBYTE = "Grüße aus Zürich — 日本語のテキスト, 한국어 and 🚀👋🏽 façade."


@pytest_asyncio.fixture
async def provider(emulator: Emulator) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key=EMULATOR_KEY, base_url=emulator.base_url("openai"))
    yield p
    await p.aclose()


def knobs(model: str = "gpt-4o", **values: object) -> str:
    """``model`` with emulator knobs appended (``gpt-4o~fault=drop,after=2``)."""
    return with_knobs(model, **values)


# -- mapping -----------------------------------------------------------------------------------


async def test_request_maps_to_the_chat_completions_call(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    request = StreamRequest(
        model="gpt-5-mini",
        messages=(Message("user", "Hi"), Message("assistant", "Hello!")),
        prompt="And now?",
        system="Be brief.",
        temperature=0.5,
        max_tokens=300,
        stop=("END",),
        reasoning="low",
    )

    _, error = await run(provider, request)

    assert error is None
    body = emulator.requests[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"},
    ]
    assert body["max_completion_tokens"] == 300
    assert "max_tokens" not in body  # reasoning models reject it
    assert body["temperature"] == 0.5
    assert body["stop"] == ["END"]
    assert body["reasoning_effort"] == "low"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert emulator.requests[-1].api_key == EMULATOR_KEY


async def test_reasoning_true_is_medium_effort_and_false_sends_none(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    await run(provider, "Hi", model="gpt-5-mini", reasoning=True)
    assert emulator.requests[-1].body["reasoning_effort"] == "medium"

    await run(provider, "Hi", model="gpt-4o")
    assert "reasoning_effort" not in emulator.requests[-1].body
    assert "max_completion_tokens" not in emulator.requests[-1].body


async def test_reasoning_tokens_are_counted_in_completion_and_never_mixed_into_text(
    provider: OpenAIProvider,
) -> None:
    plain, _ = await run(provider, "Explain", model="gpt-5-mini")
    events, error = await run(provider, "Explain", model="gpt-5-mini", reasoning="high")

    assert error is None
    assert text_of(events) == text_of(plain)
    usage = done_of(events).usage
    assert usage.reasoning_tokens > 0
    tokens = sum(isinstance(e, TokenEvent) for e in events)
    assert usage.completion_tokens == usage.reasoning_tokens + tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_stop_sequence_is_sent_and_honoured(provider: OpenAIProvider) -> None:
    events, _ = await run(provider, "Hi", model=knobs(reply=MULTIBYTE), stop=("aus",))

    assert text_of(events) == "Grüße "
    assert done_of(events).finish_reason is FinishReason.STOP


async def test_continued_stream_yields_exactly_the_rest(provider: OpenAIProvider) -> None:
    stream = provider.stream("Tell me about streams", model="gpt-4o")
    full = text_of(await collect(stream))
    partial = full[: len(full) // 3]

    rest = text_of(await collect(stream.continued(partial)))

    assert partial + rest == full
    assert rest == full[len(partial) :]


# -- verbatim captures, served as they came from api.openai.com ---------------------------------


@pytest_asyncio.fixture
async def capture_server() -> AsyncIterator[str]:
    """Answers a chat completion with the capture named by the request's model, verbatim."""

    async def serve(request: web.Request) -> web.Response:
        name = (await request.json())["model"]
        data = _INLINE[name] if name.endswith(".bytes") else (FIXTURES / name).read_bytes()
        return web.Response(body=data, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


# An OpenAI-compatible server (DeepSeek's documented `reasoning_content` delta) behind base_url.
_INLINE = {
    "compatible-reasoning.bytes": b"".join(
        b"data: " + line + b"\n\n"
        for line in (
            b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner",'
            b'"choices":[{"index":0,"delta":{"role":"assistant","content":null,'
            b'"reasoning_content":""},"finish_reason":null}]}',
            b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner",'
            b'"choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Think: 2+2"},'
            b'"finish_reason":null}]}',
            b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner",'
            b'"choices":[{"index":0,"delta":{"content":"4","reasoning_content":null},'
            b'"finish_reason":null}]}',
            b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner",'
            b'"choices":[{"index":0,"delta":{"content":"","reasoning_content":null},'
            b'"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,'
            b'"total_tokens":21,"completion_tokens_details":{"reasoning_tokens":10}}}',
            b"[DONE]",
        )
    )
}


@pytest_asyncio.fixture
async def captured(capture_server: str) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key="sk-capture", base_url=capture_server)
    yield p
    await p.aclose()


async def test_real_gpt4o_capture(captured: OpenAIProvider) -> None:
    events, error = await run(captured, "Hi", model="openai_capture_gpt4o.sse")

    assert error is None
    assert text_of(events).startswith("I'm unable to provide real-time updates")
    assert text_of(events).endswith(" news station.")
    done = done_of(events)
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (14, 47)
    assert done.usage.total_tokens == 61
    assert done.model == "gpt-4o-2024-08-06"
    assert done.details["id"] == "chatcmpl-9tXjg9DdaOfymTPDrSLfxslQEH0C2"


async def test_real_o3_mini_capture_counts_reasoning(captured: OpenAIProvider) -> None:
    events, error = await run(captured, "Hi", model="openai_reasoning.sse")

    assert error is None
    assert text_of(events) == "hello"
    assert not any(isinstance(e, ReasoningEvent) for e in events)
    usage = done_of(events).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens) == (22, 203, 192)


async def test_real_gpt5_nano_capture_all_reasoning_cut_by_length(captured: OpenAIProvider) -> None:
    events, error = await run(captured, "Hi", model="openai_reasoning_length.sse")

    assert error is None
    assert text_of(events) == ""
    done = done_of(events)
    assert done.finish_reason is FinishReason.LENGTH
    assert done.usage.completion_tokens == done.usage.reasoning_tokens == 100


async def test_compatible_server_reasoning_text_is_a_separate_event(
    captured: OpenAIProvider,
) -> None:
    events, error = await run(captured, "2+2?", model="compatible-reasoning.bytes")

    assert error is None
    assert [e.text for e in events if isinstance(e, ReasoningEvent)] == ["Think: 2+2"]
    assert text_of(events) == "4"
    assert done_of(events).usage.reasoning_tokens == 10


async def test_real_truncated_capture_is_interrupted_after_its_tokens(
    captured: OpenAIProvider,
) -> None:
    events, error = await run(captured, "Hi", model="openai_truncated.sse")

    assert type(error) is errors.StreamInterruptedError
    assert text_of(events).endswith("日本語のテキスト、中文")
    assert not any(isinstance(e, DoneEvent) for e in events)


async def test_real_error_frame_is_a_server_error_after_its_tokens(
    captured: OpenAIProvider,
) -> None:
    events, error = await run(captured, "Hi", model="openai_stream_error.sse")

    assert isinstance(error, errors.ServerError)
    assert error.retryable
    assert "server had an error" in str(error)
    assert text_of(events).startswith("Hello! Here is a multilingual answer")
    assert not any(isinstance(e, DoneEvent) for e in events)


# -- errors ------------------------------------------------------------------------------------


async def test_invalid_request_is_not_mistaken_for_context_too_long(
    provider: OpenAIProvider,
) -> None:
    _, error = await run(provider, "Hi", model=knobs(fault="invalid_request"))

    assert not isinstance(error, errors.ContextTooLongError)


async def test_error_event_mid_stream_is_a_server_error_after_the_tokens(
    provider: OpenAIProvider,
) -> None:
    events, error = await run(provider, "Hi", model=knobs(fault="error_event", after=3))

    assert isinstance(error, errors.ServerError)
    assert sum(isinstance(e, TokenEvent) for e in events) == 3
    assert not any(isinstance(e, DoneEvent) for e in events)


async def test_a_raw_transport_error_is_wrapped(provider: OpenAIProvider) -> None:
    # The stream is read below the SDK, so a dropped connection surfaces as raw httpx2.
    _, error = await run(provider, "Hi", model=knobs(fault="drop", after=1))

    assert type(error) is errors.StreamInterruptedError
    assert isinstance(error.__cause__, httpx2.TransportError)


# -- cancellation ------------------------------------------------------------------------------


def test_close_releases_the_client_a_blocking_collect_made(emulator_thread: Emulator) -> None:
    import rxllm

    provider = OpenAIProvider(api_key=EMULATOR_KEY, base_url=emulator_thread.base_url("openai"))
    result = rxllm.collect_sync(provider.stream("Hi", model="gpt-4o", max_tokens=3))
    assert result.text
    (client,) = provider._clients.values()  # made on rxllm's background loop
    assert not client.is_closed()
    provider.close()
    assert client.is_closed()
    assert not provider._clients


# -- sending: the SDK's post, as create would ------------------------------------------------


def _requests() -> list[StreamRequest]:
    from rxllm.content import image
    from rxllm.tools import Tool, ToolCall

    lookup = Tool(
        name="lookup",
        description="Look a word up",
        parameters={"type": "object", "properties": {"word": {"type": "string"}}},
    )
    call = ToolCall(id="call_1", name="lookup", arguments={"word": "x"})
    png = image(b"\x89PNG\r\n\x1a\n" + bytes(16), media_type="image/png")
    return [
        StreamRequest(model="gpt-4o", prompt="Hi"),
        StreamRequest(
            model="o3", prompt="Hi", system="S", temperature=0.2, max_tokens=9, stop=("x",)
        ),
        StreamRequest(model="o3", prompt="Hi", reasoning="high"),
        StreamRequest(
            model="gpt-4o",
            messages=[Message(role="user", content=("Look", png))],
            tools=(lookup,),
            tool_choice="lookup",
            parallel_tool_calls=False,
        ),
        StreamRequest(
            model="gpt-4o",
            messages=[
                Message(role="user", content="Define x"),
                Message(role="assistant", content="", tool_calls=(call,)),
                Message(role="tool", content="a letter", tool_call_id="call_1"),
            ],
            tools=(lookup,),
        ),
        StreamRequest(
            model="gpt-4o",
            prompt="JSON",
            response_format={"type": "object", "properties": {"a": {"type": "integer"}}},
        ),
    ]


@pytest.mark.parametrize("request_", _requests(), ids=lambda r: r.model)
async def test_the_body_rxllm_posts_is_what_create_would_send(request_: StreamRequest) -> None:
    from openai._utils import async_maybe_transform
    from openai.types.chat import completion_create_params

    provider = OpenAIProvider(api_key="k", base_url="http://127.0.0.1:9")
    params = provider._params(provider.request(request_))
    transformed = await async_maybe_transform(
        params, completion_create_params.CompletionCreateParamsStreaming
    )
    assert transformed == params


async def test_request_options_reach_the_request(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    request = provider.request(
        "Hi",
        model="gpt-4o",
        options={
            "extra_headers": {"x-trace": "t1"},
            "extra_query": {"q": "1"},
            "extra_body": {"user": "u1"},
            "timeout": 30.0,
        },
    )
    assert (await provider.complete(request)).text
    seen = emulator.requests[-1]
    assert seen.headers["x-trace"] == "t1"
    assert seen.body["user"] == "u1"
    assert "extra_body" not in seen.body
    assert "timeout" not in seen.body
    assert seen.headers["Authorization"] == f"Bearer {EMULATOR_KEY}"


async def test_an_unknown_option_is_refused_before_anything_is_sent(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    request = provider.request("Hi", model="gpt-4o", options={"no_such_parameter": 1})
    with pytest.raises(errors.InvalidRequestError, match="refused the request"):
        await provider.complete(request)
    assert emulator.requests == []


async def test_one_connection_serves_requests_one_after_another() -> None:
    """After [DONE] the rest of the body (the chunked terminator) is read, so the connection
    goes back to the pool: three replies in a row arrive on one connection."""

    replay = sse_replay((FIXTURES / "openai_text.sse").read_bytes())
    peers: list[object] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return await replay(request)

    runner, url = await serve("/chat/completions", handler)
    provider = OpenAIProvider(api_key="sk-test", base_url=url)
    try:
        for _ in range(3):
            assert (await provider.complete("Hi", model="gpt-4o")).text
    finally:
        await provider.aclose()
        await runner.cleanup()
    assert len(peers) == 3
    assert len(set(peers)) == 1


async def test_a_compressed_event_stream_is_decoded() -> None:
    """A body with a Content-Encoding is read through the decoder (a plain one is not)."""
    import gzip

    body = (FIXTURES / "openai_text.sse").read_bytes()

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        )
        await response.prepare(request)
        await response.write(gzip.compress(body))
        await response.write_eof()
        return response

    runner, url = await serve("/chat/completions", handler)
    plain_runner, plain_url = await serve("/chat/completions", sse_replay(body))
    compressed = OpenAIProvider(api_key="sk-test", base_url=url)
    plain = OpenAIProvider(api_key="sk-test", base_url=plain_url)
    try:
        got = await compressed.complete("Hi", model="gpt-4o")
        expected = await plain.complete("Hi", model="gpt-4o")
    finally:
        await compressed.aclose()
        await plain.aclose()
        await runner.cleanup()
        await plain_runner.cleanup()
    assert got.text
    assert got.text == expected.text

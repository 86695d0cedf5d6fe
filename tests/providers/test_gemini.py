"""GeminiProvider through google-genai and the emulator (and verbatim captures)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from reactivex import operators as ops

from rxllm import errors
from rxllm.content import TextPart, image
from rxllm.emulator import Emulator
from rxllm.events import DoneEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent
from rxllm.providers.gemini import GeminiProvider
from rxllm.request import Message, StreamRequest
from rxllm.testing import EMULATOR_KEY

from .support import gemini_sse, serve, sse_replay

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
MODEL = "gemini-2.5-flash"
REPLY = "Grüße aus Zürich — naïve café, 👋🏽 family 👨‍👩‍👧‍👦, 日本語 and 한국어. Done ✅"


@pytest.fixture(params=[True, False], ids=["raw", "sdk-parsed"])
def raw_stream(request: pytest.FixtureRequest) -> bool:
    """Both ways of reading the stream: the raw pipeline (default) and the public SDK."""
    return bool(request.param)


@pytest_asyncio.fixture
async def gemini(emulator: Emulator, raw_stream: bool) -> AsyncIterator[GeminiProvider]:
    provider = GeminiProvider(
        api_key=EMULATOR_KEY, base_url=emulator.base_url("gemini"), raw_stream=raw_stream
    )
    yield provider
    await provider.aclose()


def _req(
    prompt: str = "Hello", model: str = MODEL, knobs: str = "", **fields: Any
) -> StreamRequest:
    if knobs:
        fields["options"] = {"http_options": {"headers": {"x-rxllm-emulator": knobs}}}
    return StreamRequest(model=model, prompt=prompt, **fields)


def _reply(text: str) -> str:
    return "reply=" + urllib.parse.quote(text, safe="")


async def _run(
    provider: GeminiProvider, request: StreamRequest
) -> tuple[list[StreamEvent], errors.RxllmError | None]:
    """Every event the provider yields, and the error it ended with (if any)."""
    events: list[StreamEvent] = []
    try:
        async for event in provider.events(request):
            events.append(event)
    except errors.RxllmError as error:
        return events, error
    return events, None


def _text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


def _reasoning(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ReasoningEvent))


def _done(events: list[StreamEvent]) -> DoneEvent:
    dones = [e for e in events if isinstance(e, DoneEvent)]
    assert len(dones) == 1
    assert events[-1] is dones[0]
    return dones[0]


# -- mapping ------------------------------------------------------------------------------


async def test_usage_is_normalized(gemini: GeminiProvider) -> None:
    events, _ = await _run(gemini, _req(knobs="words=30"))
    tokens = len([e for e in events if isinstance(e, TokenEvent)])
    usage = _done(events).usage
    assert usage.completion_tokens == tokens  # one token per event, cumulative not summed
    assert usage.reasoning_tokens == 0
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_reasoning_is_separate_and_counted_in_completion(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    events, error = await _run(gemini, _req(reasoning="high"))
    assert error is None
    thoughts = [e for e in events if isinstance(e, ReasoningEvent)]
    answer = [e for e in events if isinstance(e, TokenEvent)]
    assert thoughts
    assert answer
    assert events.index(thoughts[-1]) < events.index(answer[0])
    assert _reasoning(events) not in _text(events)
    usage = _done(events).usage
    assert usage.reasoning_tokens == len(thoughts)
    assert usage.completion_tokens == len(thoughts) + len(answer)
    sent = emulator.requests[0].body["generationConfig"]["thinkingConfig"]
    assert sent == {"include_thoughts": True, "thinking_budget": 24576}


async def test_request_fields_reach_the_api(gemini: GeminiProvider, emulator: Emulator) -> None:
    request = StreamRequest(
        model=MODEL,
        system="Be brief.",
        messages=(
            Message("user", "Hi"),
            Message("assistant", "Hello!"),
            Message("user", "Tell me more"),
        ),
        temperature=0.5,
        max_tokens=50,
        stop=("###",),
    )
    await _run(gemini, request)
    body = emulator.requests[0].body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}], "role": "user"}
    assert [(c["role"], c["parts"][0]["text"]) for c in body["contents"]] == [
        ("user", "Hi"),
        ("model", "Hello!"),
        ("user", "Tell me more"),
    ]
    assert body["generationConfig"] == {
        "temperature": 0.5,
        "maxOutputTokens": 50,
        "stopSequences": ["###"],
    }
    assert emulator.requests[0].api_key == EMULATOR_KEY


async def test_continuation_yields_exactly_the_rest(gemini: GeminiProvider) -> None:
    full = await gemini.generate(_req())
    partial = full[: len(full) // 3]
    rest = await gemini.generate(gemini.stream(_req()).continued(partial).request)
    assert partial + rest == full
    assert rest
    assert not rest.startswith(partial)


# -- errors -------------------------------------------------------------------------------


async def test_in_band_error_event_is_a_server_error_after_the_tokens(
    gemini: GeminiProvider,
) -> None:
    events, error = await _run(gemini, _req(model=f"{MODEL}~fault=error_event,after=3"))
    assert isinstance(error, errors.ServerError)
    assert error.status == 500
    assert len(events) == 3


async def test_read_timeout_does_not_cut_a_slow_but_steady_stream(emulator: Emulator) -> None:
    # Unlike the SDK's own timeout (a deadline for the whole stream).
    provider = GeminiProvider(
        api_key=EMULATOR_KEY, base_url=emulator.base_url("gemini"), timeout=0.25
    )
    try:
        events, error = await _run(provider, _req(knobs="tps=40,words=12"))
    finally:
        await provider.aclose()
    assert error is None
    assert _done(events).finish_reason is FinishReason.STOP


async def test_unreachable_server_is_connection_failed(raw_stream: bool) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = GeminiProvider(
        api_key="k", base_url=f"http://127.0.0.1:{port}", raw_stream=raw_stream
    )
    try:
        _, error = await _run(provider, _req())
    finally:
        await provider.aclose()
    assert type(error) is errors.ConnectionFailedError
    assert error.retryable
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)


# -- cancellation -------------------------------------------------------------------------


async def test_disposing_the_subscription_closes_the_connection(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    first: asyncio.Future[StreamEvent] = asyncio.get_running_loop().create_future()

    def on_token(event: StreamEvent) -> None:
        if not first.done():
            first.set_result(event)

    ended: list[str] = []
    subscription = (
        gemini.stream(_req(knobs="tps=50,words=400"))
        .pipe(ops.filter(lambda e: isinstance(e, TokenEvent)))
        .subscribe(
            on_next=on_token,
            on_error=lambda e: ended.append("error"),
            on_completed=lambda: ended.append("completed"),
        )
    )
    await first
    subscription.dispose()
    (record,) = await emulator.wait_for_disconnects_async(1)
    assert record.disconnected
    assert record.events_sent < 400
    assert ended == []


# -- real captures ------------------------------------------------------------------------


def _capture(name: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (FIXTURES / name).read_text("utf-8").splitlines()]
    return [row["data"] for row in rows if row["kind"] in ("event", "error_event")]


@pytest_asyncio.fixture
async def replay(raw_stream: bool) -> AsyncIterator[Any]:
    """Serve a capture verbatim (``data: <json>\\r\\n\\r\\n``, EOF) and read it via the provider."""
    served: dict[str, list[dict[str, Any]]] = {}
    hits: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if not served["events"]:  # a reset before any response byte
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        return await sse_replay(gemini_sse(served["events"]))(request)

    runner, url = await serve("/v1beta/models/{spec}", handler)
    provider = GeminiProvider(api_key="k", base_url=url, raw_stream=raw_stream)

    async def run(name: str | None) -> tuple[list[StreamEvent], errors.RxllmError | None]:
        served["events"] = _capture(name) if name else []
        return await _run(provider, _req())

    run.hits = hits  # type: ignore[attr-defined]

    yield run
    await provider.aclose()
    await runner.cleanup()


async def test_real_capture_text_and_cumulative_usage(replay: Any) -> None:
    events, error = await replay("gemini_real_text.jsonl")
    assert error is None
    assert _text(events).startswith("The capital of Poland is **Warsaw**")
    assert _text(events).endswith("spirit to rebuild and thrive.")
    assert "Łazienki Park" in _text(events)
    done = _done(events)
    assert done.usage.prompt_tokens == 30
    assert done.usage.completion_tokens == 477 + 33  # candidates + thoughts
    assert done.usage.reasoning_tokens == 33
    assert done.usage.total_tokens == 540  # the capture's totalTokenCount
    assert done.model == "gemini-2.5-flash"
    assert done.details["response_id"] == "1Cawad6GGqqAvdIPveLuiAU"


async def test_real_thinking_capture_separates_thoughts(replay: Any) -> None:
    events, error = await replay("gemini_thinking.jsonl")
    assert error is None
    assert _reasoning(events).startswith("**Clarifying User Goals**")
    assert "**Clarifying" not in _text(events)
    usage = _done(events).usage
    assert (usage.prompt_tokens, usage.reasoning_tokens) == (34, 787)
    assert usage.total_tokens == 1290


async def test_safety_capture_is_content_filter(replay: Any) -> None:
    events, error = await replay("gemini_safety.jsonl")
    assert error is None
    assert _text(events) == "Here is the joke you asked for. A"
    done = _done(events)
    assert done.finish_reason is FinishReason.CONTENT_FILTER
    assert done.details["finish_reason"] == "SAFETY"


async def test_max_tokens_capture_is_length(replay: Any) -> None:
    events, _ = await replay("gemini_max_tokens.jsonl")
    done = _done(events)
    assert _text(events) == "The capital of France is"
    assert done.finish_reason is FinishReason.LENGTH
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (15, 5)


async def test_midstream_error_capture_is_a_server_error(replay: Any) -> None:
    events, error = await replay("gemini_midstream_error.jsonl")
    assert len(events) == 2
    assert isinstance(error, errors.ServerError)
    assert "internal error" in str(error)


async def test_reset_before_headers_is_not_retried_by_the_sdk(replay: Any) -> None:
    # google-genai otherwise sleeps 1-10 s and retries once, whatever its retry options say,
    # unless retry options are set (the provider sets attempts=1).
    events, error = await replay(None)
    assert events == []
    assert type(error) is errors.StreamInterruptedError
    assert len(replay.hits) == 1


# -- a text-only request's JSON, built without the SDK's conversion ---------------------------

_PNG = image(b"\x89PNG\r\n\x1a\n" + bytes(16), media_type="image/png")

_PLAIN = [
    StreamRequest(model=MODEL, prompt="Hi"),
    StreamRequest(model=MODEL, prompt='Grüße 🚀 "quoted"\nnew line', system="Be brief"),
    StreamRequest(model=MODEL, prompt="Hi", temperature=0.0, max_tokens=1, stop=("x", "y")),
    StreamRequest(model=MODEL, prompt="Hi", temperature=1.5, reasoning=True),
    *(StreamRequest(model=MODEL, prompt="Hi", reasoning=e) for e in ("low", "medium", "high")),
    StreamRequest(
        model=f"models/{MODEL}",
        messages=[
            Message(role="system", content="S"),
            Message(role="user", content="a"),
            Message(role="assistant", content="b"),
            Message(role="user", content="c"),
        ],
    ),
    StreamRequest(
        model=MODEL,
        messages=[Message(role="user", content="Hi"), Message(role="assistant", content="Cut")],
    ).with_continuation_instruction(),
]


@pytest.mark.parametrize("request_", _PLAIN)
@pytest.mark.parametrize("default_max_tokens", [None, 4096])
async def test_a_text_only_request_is_the_json_the_sdk_would_send(
    request_: StreamRequest, default_max_tokens: int | None
) -> None:
    from rxllm.providers import gemini

    provider = GeminiProvider(
        api_key="k", base_url="http://127.0.0.1:9", default_max_tokens=default_max_tokens
    )
    try:
        client = provider.client()
        body = gemini._plain_body(request_, provider.max_tokens(request_))
        assert body is not None
        ours = gemini._plain_request(client, request_.model, body)
        sdk = gemini._raw_request(
            client, request_.model, provider._contents(request_), provider._config(request_)
        )
        assert ours.url == sdk.url
        assert ours.method == sdk.method
        assert ours.headers == sdk.headers
        assert json.dumps(ours.data, sort_keys=True) == json.dumps(sdk.data, sort_keys=True)
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [{"name": "f", "description": "", "parameters": {"type": "object"}}]},
        {"response_format": {"type": "object", "properties": {}}},
        {"options": {"top_k": 3}},
        {"messages": [Message(role="user", content=(TextPart("Look"), _PNG))]},
    ],
)
def test_any_other_request_goes_through_the_sdk_conversion(fields: dict[str, Any]) -> None:
    from rxllm.providers import gemini

    if "messages" not in fields:
        fields = {"prompt": "Hi", **fields}
    request = StreamRequest(model=MODEL, **fields)
    assert gemini._plain_body(request, None) is None


# -- the proxy from the environment, looked up once per client ----------------------------


async def test_the_proxy_from_the_environment_carries_the_request(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host that does not resolve, reached only through the "proxy" (the emulator, which
    # serves a plain-HTTP proxy's absolute-form request like any other).
    served = urllib.parse.urlsplit(emulator.base_url("gemini"))
    monkeypatch.setenv("HTTP_PROXY", f"http://{served.netloc}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    provider = GeminiProvider(api_key=EMULATOR_KEY, base_url=f"http://gemini.invalid{served.path}")
    try:
        result = await provider.complete("Hi", model=MODEL, max_tokens=20)
    finally:
        await provider.aclose()
    assert result.text
    assert emulator.requests[-1].headers["Host"] == "gemini.invalid"


async def test_no_proxy_for_a_host_it_excludes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "gemini.invalid")
    from rxllm.providers import gemini

    assert gemini._env_proxy("http://gemini.invalid/") == {}
    assert gemini._env_proxy("http://elsewhere.invalid/")["proxy"].port == 9

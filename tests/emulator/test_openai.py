"""The OpenAI Chat Completions dialect, driven by the official ``openai`` SDK over a socket."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import pytest_asyncio
from aiohttp import web
from openai.types.chat import ChatCompletionChunk

from rxllm import catalog
from rxllm.emulator import Emulator
from rxllm.emulator._content import tokenize
from rxllm.testing import EMULATOR_KEY

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
HELLO = [{"role": "user", "content": "Say hello"}]
MULTIBYTE = "Grüße aus Zürich — 日本語のテキスト, 한국어 and 🚀👋🏽 façade."


@pytest_asyncio.fixture
async def client(emulator: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(
        base_url=emulator.base_url("openai"), api_key=EMULATOR_KEY, max_retries=0
    )
    yield sdk
    await sdk.close()


def knobs(**values: object) -> dict[str, str]:
    """The ``x-rxllm-emulator`` header for ``values`` (URL-quoted, as the knob syntax wants)."""
    text = ",".join(f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in values.items())
    return {"x-rxllm-emulator": text}


async def stream_chunks(
    client: openai.AsyncOpenAI, *, model: str = "gpt-4o", **params: Any
) -> list[ChatCompletionChunk]:
    params.setdefault("messages", HELLO)
    stream = await client.chat.completions.create(model=model, stream=True, **params)
    return [chunk async for chunk in stream]


async def drain(stream: AsyncIterator[ChatCompletionChunk], into: list[str]) -> None:
    """Read ``stream`` to its end, keeping the content deltas in ``into`` (even if it raises)."""
    async for chunk in stream:
        into.extend(contents([chunk]))


def contents(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


# -- content -----------------------------------------------------------------------------------


async def test_text_is_exact_with_multibyte_characters_split_across_chunks(
    client: openai.AsyncOpenAI,
) -> None:
    chunks = await stream_chunks(client, extra_headers=knobs(reply=MULTIBYTE))

    pieces = contents(chunks)
    assert "".join(pieces) == MULTIBYTE
    assert pieces == tokenize(MULTIBYTE)
    assert pieces[:2] == ["Grüß", "e"]
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant"
    assert first.delta.content == ""
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1


async def test_chunk_knob_groups_tokens_per_event(client: openai.AsyncOpenAI) -> None:
    chunks = await stream_chunks(client, extra_headers=knobs(reply=MULTIBYTE, chunk=3))

    pieces = contents(chunks)
    assert "".join(pieces) == MULTIBYTE
    assert len(pieces) == -(-len(tokenize(MULTIBYTE)) // 3)


async def test_same_request_same_reply_and_another_prompt_another_reply(
    client: openai.AsyncOpenAI,
) -> None:
    first = "".join(contents(await stream_chunks(client)))
    again = "".join(contents(await stream_chunks(client)))
    other = "".join(
        contents(await stream_chunks(client, messages=[{"role": "user", "content": "Hm"}]))
    )

    assert first == again
    assert first != other
    assert len(first.split()) >= 40  # long enough to look like an answer


async def test_usage_chunk_only_when_include_usage_is_set(
    client: openai.AsyncOpenAI, emulator: Emulator
) -> None:
    without = await stream_chunks(client)
    assert all(c.choices and c.usage is None for c in without)

    chunks = await stream_chunks(client, stream_options={"include_usage": True})
    *streamed, last = chunks
    assert last.choices == []
    assert all(c.usage is None for c in streamed)
    usage = last.usage
    assert usage is not None
    assert usage.completion_tokens == len(contents(chunks))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens > 0
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


async def test_reasoning_model_spends_reasoning_tokens_but_streams_no_reasoning_text(
    client: openai.AsyncOpenAI,
) -> None:
    plain = await stream_chunks(client, model="gpt-5-mini", stream_options={"include_usage": True})
    chunks = await stream_chunks(
        client,
        model="gpt-5-mini",
        reasoning_effort="high",
        stream_options={"include_usage": True},
    )

    assert contents(chunks) == contents(plain)  # the reply itself is unchanged
    for chunk in chunks:
        for choice in chunk.choices:
            assert (choice.delta.model_extra or {}) == {}  # no reasoning text in any delta
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert reasoning is not None
    assert reasoning > 0
    assert usage.completion_tokens == reasoning + len(contents(chunks))


async def test_max_completion_tokens_cuts_the_reply_with_finish_reason_length(
    client: openai.AsyncOpenAI,
) -> None:
    chunks = await stream_chunks(
        client, max_completion_tokens=5, stream_options={"include_usage": True}
    )

    assert len(contents(chunks)) == 5
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_reasoning_counts_against_max_completion_tokens(client: openai.AsyncOpenAI) -> None:
    chunks = await stream_chunks(
        client,
        model="gpt-5-nano",
        reasoning_effort="low",
        max_completion_tokens=10,
        stream_options={"include_usage": True},
    )

    assert contents(chunks) == []
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens == usage.completion_tokens_details.reasoning_tokens == 10


async def test_assistant_prefill_continues_the_reply_without_repeating(
    client: openai.AsyncOpenAI,
) -> None:
    full = contents(await stream_chunks(client))
    prefill = "".join(full[:7])

    rest = contents(
        await stream_chunks(client, messages=[*HELLO, {"role": "assistant", "content": prefill}])
    )

    assert prefill + "".join(rest) == "".join(full)
    assert rest == full[7:]


async def test_stop_sequence_ends_the_reply_before_it(client: openai.AsyncOpenAI) -> None:
    chunks = await stream_chunks(client, stop=["aus"], extra_headers=knobs(reply=MULTIBYTE))

    assert "".join(contents(chunks)) == "Grüße "
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_non_streaming_completion_has_the_streamed_text_and_usage(
    client: openai.AsyncOpenAI,
) -> None:
    streamed = await stream_chunks(client, stream_options={"include_usage": True})

    completion = await client.chat.completions.create(model="gpt-4o", messages=HELLO)

    assert completion.object == "chat.completion"
    message = completion.choices[0].message
    assert message.role == "assistant"
    assert message.content == "".join(contents(streamed))
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage == streamed[-1].usage


async def test_model_listing_lists_the_catalog(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()

    assert [m.id for m in page.data] == catalog.models("openai")
    assert all(m.object == "model" for m in page.data)


# -- errors and faults -------------------------------------------------------------------------


async def test_wrong_key_is_invalid_api_key_and_never_echoes_the_key(emulator: Emulator) -> None:
    wrong = "sk-wrong-key-that-must-not-leak-9876"
    sdk = openai.AsyncOpenAI(base_url=emulator.base_url("openai"), api_key=wrong, max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()
    finally:
        await sdk.close()

    error = caught.value
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert error.type == "invalid_request_error"
    assert wrong not in str(error)
    assert wrong not in json.dumps(error.body)
    assert emulator.requests[-1].api_key == wrong


@pytest.mark.parametrize(
    ("fault", "sdk_error", "status", "error_type", "code"),
    [
        ("rate_limited", openai.RateLimitError, 429, "tokens", "rate_limit_exceeded"),
        ("overloaded", openai.InternalServerError, 503, "server_error", None),
        ("server_error", openai.InternalServerError, 500, "server_error", None),
        (
            "invalid_key",
            openai.AuthenticationError,
            401,
            "invalid_request_error",
            "invalid_api_key",
        ),
        ("invalid_request", openai.BadRequestError, 400, "invalid_request_error", "invalid_value"),
        (
            "context_too_long",
            openai.BadRequestError,
            400,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        ("model_not_found", openai.NotFoundError, 404, "invalid_request_error", "model_not_found"),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_before_stream_faults_raise_the_sdks_own_errors(
    client: openai.AsyncOpenAI,
    fault: str,
    sdk_error: type[openai.APIStatusError],
    status: int,
    error_type: str,
    code: str | None,
    stream: bool,
) -> None:
    with pytest.raises(sdk_error) as caught:
        await client.chat.completions.create(
            model=f"gpt-4o~fault={fault}", messages=HELLO, stream=stream
        )

    error = caught.value
    assert error.status_code == status
    assert error.type == error_type
    assert error.code == code
    assert isinstance(error.body, dict)
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.response.headers["x-request-id"].startswith("req_")


async def test_rate_limit_carries_the_retry_after_the_sdk_reads(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=HELLO,
            extra_headers=knobs(fault="rate_limited", retry_after=2.5),
        )

    headers = caught.value.response.headers
    assert headers["retry-after"] == "3"
    assert headers["retry-after-ms"] == "2500"
    assert client._parse_retry_after_header(headers) == 2.5
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert {"x-ratelimit-limit-requests", "x-ratelimit-reset-tokens"} <= set(headers)
    assert "Please try again in 2.5s" in caught.value.message


async def test_fail_the_first_n_requests_then_succeed(client: openai.AsyncOpenAI) -> None:
    model = "gpt-4o~fault=server_error,times=2"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await stream_chunks(client, model=model)

    assert contents(await stream_chunks(client, model=model))


async def test_max_tokens_on_a_reasoning_model_is_the_real_400(client: openai.AsyncOpenAI) -> None:
    captured = json.loads((FIXTURES / "openai_400.json").read_text())["error"]

    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-5-mini", messages=HELLO, max_tokens=10)

    assert caught.value.body == captured


async def test_malformed_bodies_and_knobs_get_the_real_400_shape(emulator: Emulator) -> None:
    url = emulator.base_url("openai") + "/chat/completions"
    auth = {"Authorization": f"Bearer {EMULATOR_KEY}"}
    async with httpx2.AsyncClient() as http:
        not_json = await http.post(url, headers=auth, content=b"{not json")
        no_messages = await http.post(url, headers=auth, json={"model": "gpt-4o"})
        bad_knob = await http.post(
            url, headers=auth, json={"model": "gpt-4o~fault=nonsense", "messages": HELLO}
        )
        no_key = await http.post(url, json={"model": "gpt-4o", "messages": HELLO})

    for response in (not_json, no_messages, bad_knob):
        assert response.status_code == 400
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in not_json.json()["error"]["message"]
    assert no_messages.json()["error"]["code"] == "missing_required_parameter"
    assert "nonsense" in bad_knob.json()["error"]["message"]
    assert no_key.status_code == 401
    assert "didn't provide an API key" in no_key.json()["error"]["message"]


async def test_drop_cuts_the_connection_after_k_content_chunks(
    client: openai.AsyncOpenAI,
) -> None:
    received: list[str] = []
    stream = await client.chat.completions.create(
        model="gpt-4o~fault=drop,after=4", messages=HELLO, stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        await drain(stream, received)

    assert len(received) == 4


async def test_truncate_ends_cleanly_without_finish_reason_or_done(
    client: openai.AsyncOpenAI, emulator: Emulator
) -> None:
    url = emulator.base_url("openai") + "/chat/completions"
    chunks = await stream_chunks(client, model="gpt-4o~fault=truncate,after=3")

    assert len(contents(chunks)) == 3
    assert all(c.choices[0].finish_reason is None for c in chunks)  # the SDK reports success
    async with httpx2.AsyncClient() as http:
        raw = await http.post(
            url,
            headers={"Authorization": f"Bearer {EMULATOR_KEY}"},
            json={"model": "gpt-4o~fault=truncate,after=3", "messages": HELLO, "stream": True},
        )
    assert raw.status_code == 200
    assert "[DONE]" not in raw.text


async def test_error_event_mid_stream_raises_the_sdks_api_error(
    client: openai.AsyncOpenAI,
) -> None:
    received: list[str] = []
    stream = await client.chat.completions.create(
        model="gpt-4o~fault=error_event,after=2", messages=HELLO, stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        await drain(stream, received)

    assert not isinstance(caught.value, openai.APIStatusError)  # in-band, inside a 200
    assert caught.value.type == "server_error"
    assert "server had an error" in caught.value.message
    assert len(received) == 2


async def test_stall_keeps_the_connection_open_until_the_client_gives_up(
    emulator: Emulator,
) -> None:
    sdk = openai.AsyncOpenAI(
        base_url=emulator.base_url("openai"), api_key=EMULATOR_KEY, max_retries=0, timeout=0.3
    )
    received: list[str] = []
    try:
        stream = await sdk.chat.completions.create(
            model="gpt-4o~fault=stall,after=2", messages=HELLO, stream=True
        )
        with pytest.raises(openai.APITimeoutError):
            await drain(stream, received)
    finally:
        await sdk.close()

    assert len(received) == 2
    disconnects = await emulator.wait_for_disconnects_async(1)
    assert disconnects[0].fault == "stall"


@pytest.mark.parametrize(
    ("fault", "sdk_error"),
    [
        ("drop", openai.APIConnectionError),
        ("truncate", openai.APIConnectionError),
        ("error_event", openai.InternalServerError),
    ],
)
async def test_mid_stream_faults_on_a_non_streaming_request(
    client: openai.AsyncOpenAI, fault: str, sdk_error: type[openai.APIError]
) -> None:
    with pytest.raises(sdk_error):
        await client.chat.completions.create(model=f"gpt-4o~fault={fault}", messages=HELLO)


async def test_client_cancel_is_recorded_as_a_disconnect(
    client: openai.AsyncOpenAI, emulator: Emulator
) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, extra_headers=knobs(tps=50, words=400)
    )
    seen = 0
    async for chunk in stream:
        seen += len(contents([chunk]))
        if seen == 3:
            break
    await stream.close()  # openai 3.x leaves the connection open on break alone

    disconnects = await emulator.wait_for_disconnects_async(1)
    assert len(disconnects) == 1
    assert disconnects[0].dialect == "openai"
    assert not disconnects[0].completed
    assert emulator.requests[-1].body["model"] == "gpt-4o"


# -- fidelity: the SDK's view of real captures and of the emulator agree -----------------------


def shape(value: Any) -> Any:
    """The structure of a parsed chunk: keys as sent and the JSON type of every value."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def kinds(chunks: list[ChatCompletionChunk]) -> list[Any]:
    """Chunk shapes in order, consecutive repeats (the content deltas) collapsed."""
    out: list[Any] = []
    for chunk in chunks:
        s = shape(chunk.model_dump(exclude_unset=True))
        if not out or out[-1] != s:
            out.append(s)
    return out


@pytest_asyncio.fixture
async def capture_server() -> AsyncIterator[str]:
    """A tiny local server that answers a chat completion with a capture file, verbatim."""

    async def serve(request: web.Request) -> web.Response:
        body = await request.json()
        data = (FIXTURES / body["model"]).read_bytes()
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


async def captured(base_url: str, name: str) -> list[ChatCompletionChunk]:
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    try:
        return await stream_chunks(sdk, model=name)
    finally:
        await sdk.close()


async def test_fidelity_reasoning_model_cut_by_length(
    client: openai.AsyncOpenAI, capture_server: str
) -> None:
    # Verbatim gpt-5-nano stream from api.openai.com: every token spent on reasoning.
    real = await captured(capture_server, "openai_reasoning_length.sse")
    emulated = await stream_chunks(
        client,
        model="gpt-5-nano",
        reasoning_effort="low",
        max_completion_tokens=12,
        stream_options={"include_usage": True},
    )

    assert kinds(emulated) == kinds(real)
    assert [c.choices[0].finish_reason for c in emulated if c.choices] == [
        c.choices[0].finish_reason for c in real if c.choices
    ]
    for chunks in (real, emulated):
        usage = chunks[-1].usage
        assert usage is not None
        assert usage.completion_tokens_details is not None
        assert usage.completion_tokens == usage.completion_tokens_details.reasoning_tokens


async def test_fidelity_text_stream_with_usage(
    client: openai.AsyncOpenAI, capture_server: str
) -> None:
    # The current envelope (service_tier, usage:null, obfuscation) around multilingual text.
    real = await captured(capture_server, "openai_text.sse")
    text = "".join(contents(real))
    emulated = await stream_chunks(
        client,
        model="gpt-4o-2024-08-06",
        stream_options={"include_usage": True},
        extra_headers=knobs(reply=text),
    )

    assert kinds(emulated) == kinds(real)
    assert "".join(contents(emulated)) == text
    assert emulated[-2].choices[0].finish_reason == real[-2].choices[0].finish_reason == "stop"
    assert emulated[0].model_dump(
        exclude={"id", "created", "system_fingerprint", "obfuscation"}
    ) == (real[0].model_dump(exclude={"id", "created", "system_fingerprint", "obfuscation"}))


async def test_fidelity_error_frame(client: openai.AsyncOpenAI, capture_server: str) -> None:
    async def error_of(sdk: openai.AsyncOpenAI, model: str) -> openai.APIError:
        stream = await sdk.chat.completions.create(model=model, messages=HELLO, stream=True)
        with pytest.raises(openai.APIError) as caught:
            await drain(stream, [])
        return caught.value

    real_sdk = openai.AsyncOpenAI(base_url=capture_server, api_key="unused", max_retries=0)
    try:
        real = await error_of(real_sdk, "openai_stream_error.sse")
    finally:
        await real_sdk.close()
    emulated = await error_of(client, "gpt-4o~fault=error_event")

    assert type(emulated) is type(real)
    assert emulated.body == real.body
    assert emulated.message == real.message

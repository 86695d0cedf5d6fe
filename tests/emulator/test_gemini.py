"""The Gemini dialect, driven by the official google-genai SDK over a real socket."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from google import genai
from google.genai import errors, types

from rxllm.emulator import Emulator
from rxllm.testing import EMULATOR_KEY
from tests.providers.support import gemini_sse, serve, sse_replay

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
MODEL = "gemini-2.5-flash"
REPLY = "Grüße aus Zürich — naïve café, 👋🏽 family 👨‍👩‍👧‍👦 flag 🇯🇵. CJK: 你好，世界！ Done ✅"  # noqa: RUF001


def _client(base_url: str, key: str = EMULATOR_KEY, timeout: int | None = None) -> genai.Client:
    """The SDK pointed at ``base_url``, with its retries off.

    It gets its own aiohttp session (an SDK option): the session class the SDK would
    build subclasses ``aiohttp.ClientSession``, which aiohttp deprecates with a warning.
    Close it with :func:`_close`.
    """
    options = types.HttpOptions(
        base_url=base_url,
        api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1),
        aiohttp_client=aiohttp.ClientSession(),
        timeout=timeout,
    )
    return genai.Client(api_key=key, vertexai=False, http_options=options)


async def _close(client: genai.Client) -> None:
    await client.aio.aclose()
    session = client._api_client._http_options.aiohttp_client
    if session is not None:
        await session.close()


@pytest_asyncio.fixture
async def client(emulator: Emulator) -> AsyncIterator[genai.Client]:
    c = _client(emulator.base_url("gemini"))
    yield c
    await _close(c)


def _knobs(knobs: str, **config: Any) -> types.GenerateContentConfig:
    """A config whose request carries emulator knobs in the ``x-rxllm-emulator`` header."""
    return types.GenerateContentConfig(
        http_options=types.HttpOptions(headers={"x-rxllm-emulator": knobs}), **config
    )


def _reply_knob(text: str) -> str:
    return "reply=" + urllib.parse.quote(text, safe="")


async def _stream(
    client: genai.Client, model: str = MODEL, contents: Any = "Hello", **kw: Any
) -> list[types.GenerateContentResponse]:
    stream = await client.aio.models.generate_content_stream(model=model, contents=contents, **kw)
    return [chunk async for chunk in stream]


async def _drain(stream: Any, into: list[types.GenerateContentResponse]) -> None:
    """Iterate ``stream`` into ``into`` (what arrived stays there when it raises)."""
    async for chunk in stream:
        into.append(chunk)


def _text(chunks: list[types.GenerateContentResponse], *, thought: bool = False) -> str:
    out: list[str] = []
    for chunk in chunks:
        for candidate in chunk.candidates or []:
            for part in (candidate.content and candidate.content.parts) or []:
                if part.text is not None and bool(part.thought) == thought:
                    out.append(part.text)
    return "".join(out)


def _usage(chunk: types.GenerateContentResponse) -> types.GenerateContentResponseUsageMetadata:
    assert chunk.usage_metadata is not None
    return chunk.usage_metadata


def _candidate(chunk: types.GenerateContentResponse) -> types.Candidate:
    assert chunk.candidates
    return chunk.candidates[0]


def _parts(chunk: types.GenerateContentResponse) -> list[types.Part]:
    content = _candidate(chunk).content
    assert content is not None
    return content.parts or []


def _n(count: int | None) -> int:
    """A token count the API leaves out when it is zero."""
    return count or 0


def _finishes(chunks: list[types.GenerateContentResponse]) -> list[str | None]:
    reasons = [_candidate(c).finish_reason for c in chunks]
    return [r.value if r else None for r in reasons]


# -- content ------------------------------------------------------------------------------


async def test_streams_the_exact_text_with_multibyte_characters(client: genai.Client) -> None:
    chunks = await _stream(client, config=_knobs(_reply_knob(REPLY)))
    assert _text(chunks) == REPLY
    assert len(chunks) > 10  # token by token, so graphemes are split across events
    assert _finishes(chunks) == [None] * (len(chunks) - 1) + ["STOP"]
    assert {c.model_version for c in chunks} == {MODEL}
    assert len({c.response_id for c in chunks}) == 1


async def test_usage_is_cumulative_on_every_chunk(client: genai.Client) -> None:
    chunks = await _stream(client, config=_knobs("words=20"))
    counts = [_n(_usage(c).candidates_token_count) for c in chunks]
    assert len(counts) == len(chunks)
    assert counts == sorted(counts)
    last = chunks[-1].usage_metadata
    assert last is not None
    assert last.prompt_token_count
    assert last.candidates_token_count
    assert last.candidates_token_count == counts[-1] == len(chunks)
    assert last.total_token_count == last.prompt_token_count + last.candidates_token_count
    assert last.thoughts_token_count is None  # absent when there was no thinking


async def test_thoughts_stream_first_when_include_thoughts_is_set(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024)
    )
    chunks = await _stream(client, config=config)
    flags = [bool(_parts(c)[0].thought) for c in chunks]
    first_answer = flags.index(False)
    assert all(flags[:first_answer])
    assert not any(flags[first_answer:])
    assert first_answer > 0
    thoughts = _text(chunks, thought=True)
    assert thoughts
    assert thoughts not in _text(chunks)
    assert _parts(chunks[first_answer])[0].thought_signature
    last = _usage(chunks[-1])
    assert last is not None
    assert last.thoughts_token_count == first_answer
    assert last.total_token_count == (
        _n(last.prompt_token_count)
        + _n(last.candidates_token_count)
        + _n(last.thoughts_token_count)
    )


async def test_no_thought_parts_without_include_thoughts(client: genai.Client) -> None:
    chunks = await _stream(client)
    assert _text(chunks, thought=True) == ""


async def test_max_output_tokens_ends_with_max_tokens(client: genai.Client) -> None:
    chunks = await _stream(client, config=types.GenerateContentConfig(max_output_tokens=5))
    assert _finishes(chunks)[-1] == "MAX_TOKENS"
    assert _usage(chunks[-1]).candidates_token_count == 5
    full = _text(await _stream(client))
    assert full.startswith(_text(chunks))
    assert full != _text(chunks)


async def test_stop_sequence_cuts_the_reply(client: genai.Client) -> None:
    chunks = await _stream(
        client,
        config=_knobs(_reply_knob("one two three four"), stop_sequences=[" three"]),
    )
    assert _text(chunks) == "one two"
    assert _finishes(chunks)[-1] == "STOP"


async def test_continues_after_an_assistant_prefill(client: genai.Client) -> None:
    prompt = types.Content(role="user", parts=[types.Part(text="Tell me a story")])
    full = _text(await _stream(client, contents=[prompt]))
    prefill = full[: len(full) // 2]
    rest = await _stream(
        client,
        contents=[prompt, types.Content(role="model", parts=[types.Part(text=prefill)])],
    )
    assert prefill + _text(rest) == full
    assert _text(rest) != full


async def test_system_instruction_counts_as_prompt(client: genai.Client) -> None:
    plain = _usage((await _stream(client))[-1])
    config = types.GenerateContentConfig(system_instruction="Be terse and precise")
    with_system = _usage((await _stream(client, config=config))[-1])
    assert _n(with_system.prompt_token_count) > _n(plain.prompt_token_count)


async def test_generate_content_returns_the_whole_reply(client: genai.Client) -> None:
    streamed = await _stream(client, config=_knobs(_reply_knob(REPLY)))
    response = await client.aio.models.generate_content(
        model=MODEL, contents="Hello", config=_knobs(_reply_knob(REPLY))
    )
    assert response.text == REPLY
    assert _candidate(response).finish_reason == types.FinishReason.STOP
    assert response.usage_metadata == streamed[-1].usage_metadata


async def test_the_key_arrives_in_x_goog_api_key(client: genai.Client, emulator: Emulator) -> None:
    await _stream(client)
    (record,) = emulator.requests
    assert record.api_key == EMULATOR_KEY
    assert record.endpoint == "streamGenerateContent"
    assert record.stream
    assert record.completed
    assert not record.disconnected
    assert record.body["contents"] == [{"parts": [{"text": "Hello"}], "role": "user"}]


async def test_lists_models_in_googles_shape(
    client: genai.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rxllm import catalog

    monkeypatch.setattr(catalog, "models", lambda provider: ["gemini-2.5-flash", "gemini-2.5-pro"])
    names = [m.name async for m in await client.aio.models.list()]
    assert names == ["models/gemini-2.5-flash", "models/gemini-2.5-pro"]
    model = await client.aio.models.get(model="gemini-2.5-pro")
    assert model.input_token_limit
    assert model.supported_actions
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.get(model="gemini-0")
    assert info.value.code == 404


# -- faults before the stream --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_type", "code", "status"),
    [
        ("rate_limited", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("overloaded", errors.ServerError, 503, "UNAVAILABLE"),
        ("server_error", errors.ServerError, 500, "INTERNAL"),
        ("invalid_key", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("invalid_request", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("context_too_long", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("model_not_found", errors.ClientError, 404, "NOT_FOUND"),
    ],
)
async def test_before_stream_faults_raise_the_sdks_error(
    client: genai.Client, fault: str, error_type: type[errors.APIError], code: int, status: str
) -> None:
    with pytest.raises(error_type) as info:
        await _stream(client, model=f"{MODEL}~fault={fault}")
    assert (info.value.code, info.value.status) == (code, status)
    assert info.value.message


async def test_rate_limit_carries_google_retry_info(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as info:
        await _stream(client, model=f"{MODEL}~fault=rate_limited,retry_after=2.5")
    details = info.value.details["error"]["details"]
    (retry,) = [d for d in details if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry["retryDelay"] == "2.500s"


async def test_wrong_key_is_400_api_key_invalid(emulator: Emulator) -> None:
    wrong = _client(emulator.base_url("gemini"), key="not-the-key")
    try:
        with pytest.raises(errors.ClientError) as info:
            await _stream(wrong)
    finally:
        await _close(wrong)
    assert info.value.code == 400
    (reason,) = [d["reason"] for d in info.value.details["error"]["details"] if "reason" in d]
    assert reason == "API_KEY_INVALID"
    assert "not-the-key" not in str(info.value)


async def test_times_fails_the_first_requests_then_succeeds(client: genai.Client) -> None:
    model = f"{MODEL}~fault=overloaded,times=1"
    with pytest.raises(errors.ServerError):
        await _stream(client, model=model)
    assert _finishes(await _stream(client, model=model))[-1] == "STOP"


async def test_bad_knobs_and_malformed_bodies_get_googles_400(emulator: Emulator) -> None:
    url = emulator.base_url("gemini") + f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    headers = {"x-goog-api-key": EMULATOR_KEY, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for body, extra in (
            (b"{not json", {}),
            (b'{"contents": []}', {}),
            (b'{"contents": [{"role": "user", "parts": []}]}', {}),
            (
                b'{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}',
                {"x-rxllm-emulator": "tps=fast"},
            ),
        ):
            async with session.post(url, data=body, headers={**headers, **extra}) as response:
                assert response.status == 400
                assert response.content_type == "application/json"
                error = (await response.json())["error"]
                assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
        async with session.post(url, data=b"{}") as response:  # no key at all
            assert response.status == 403
            assert (await response.json())["error"]["status"] == "PERMISSION_DENIED"


# -- faults in the stream ------------------------------------------------------------------


async def test_drop_cuts_the_connection_after_k_events(client: genai.Client) -> None:
    stream = await client.aio.models.generate_content_stream(
        model=f"{MODEL}~fault=drop,after=3", contents="Hello"
    )
    received: list[types.GenerateContentResponse] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        await _drain(stream, received)
    assert len(received) == 3


async def test_truncate_ends_cleanly_without_a_finish_reason(
    client: genai.Client, emulator: Emulator
) -> None:
    chunks = await _stream(client, model=f"{MODEL}~fault=truncate,after=4")
    assert len(chunks) == 4
    assert _finishes(chunks) == [None] * 4  # the SDK reports success: rxllm must not
    assert emulator.requests[0].completed


async def test_error_event_raises_server_error_mid_stream(client: genai.Client) -> None:
    stream = await client.aio.models.generate_content_stream(
        model=f"{MODEL}~fault=error_event,after=2", contents="Hello"
    )
    received: list[types.GenerateContentResponse] = []
    with pytest.raises(errors.ServerError) as info:
        await _drain(stream, received)
    assert len(received) == 2
    assert (info.value.code, info.value.status) == (500, "INTERNAL")


async def test_stall_keeps_the_connection_open_until_the_client_leaves(
    emulator: Emulator,
) -> None:
    # google-genai's timeout is in milliseconds and is a deadline for the whole stream.
    impatient = _client(emulator.base_url("gemini"), timeout=300)
    try:
        stream = await impatient.aio.models.generate_content_stream(
            model=f"{MODEL}~fault=stall,after=2", contents="Hello"
        )
        received: list[types.GenerateContentResponse] = []
        with pytest.raises(asyncio.TimeoutError):
            await _drain(stream, received)
    finally:
        await _close(impatient)
    assert len(received) == 2
    (record,) = await emulator.wait_for_disconnects_async(1)
    assert record.events_sent == 2


async def test_cancelling_the_iterating_task_is_recorded_as_a_disconnect(
    client: genai.Client, emulator: Emulator
) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        stream = await client.aio.models.generate_content_stream(
            model=MODEL, contents="Hello", config=_knobs("tps=50,words=500")
        )
        async for _ in stream:
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (record,) = await emulator.wait_for_disconnects_async(1)
    assert record.disconnected
    assert not record.completed
    assert 0 < record.events_sent < 500


# -- fidelity against real captures --------------------------------------------------------


def _capture(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["data"] for line in lines[1:] if json.loads(line)["kind"] == "event"]


@pytest_asyncio.fixture
async def replay() -> AsyncIterator[dict[str, list[dict[str, Any]]]]:
    """A tiny server that serves ``replay[model]`` verbatim, in the real wire form."""
    captures: dict[str, list[dict[str, Any]]] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        model = request.match_info["spec"].partition(":")[0]
        return await sse_replay(gemini_sse(captures[model]))(request)

    runner, url = await serve("/v1beta/models/{spec}", handler)
    captures["__url__"] = [{"url": url}]
    yield captures
    await runner.cleanup()


def _shape(chunks: list[types.GenerateContentResponse]) -> list[tuple[Any, ...]]:
    """What must agree between a capture and the emulator: per chunk, the parsed structure."""
    out = []
    for chunk in chunks:
        candidate = _candidate(chunk)
        assert chunk.candidates is not None
        assert len(chunk.candidates) == 1
        assert candidate.content is not None
        parts = _parts(chunk)
        usage = _usage(chunk)
        out.append(
            (
                candidate.content.role,
                candidate.index,
                candidate.finish_reason,
                tuple(bool(p.thought) for p in parts),
                tuple(sorted(k for k, v in usage.model_dump().items() if v is not None)),
                chunk.model_version is not None,
                chunk.response_id is not None,
            )
        )
    return out


def _collapse(shapes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Consecutive equal shapes as one (the captures' event counts are the model's)."""
    return [s for i, s in enumerate(shapes) if i == 0 or s != shapes[i - 1]]


async def test_emulator_matches_the_real_text_capture(
    client: genai.Client, replay: dict[str, list[dict[str, Any]]]
) -> None:
    events = _capture("gemini_real_text.jsonl")
    replay["gemini-2.5-flash"] = events
    real_client = _client(replay["__url__"][0]["url"])
    try:
        real = await _stream(real_client)
    finally:
        await _close(real_client)
    text = _text(real)
    ours = await _stream(client, config=_knobs(_reply_knob(text) + ",chunk=12"))
    assert _text(ours) == text
    # The capture's hidden thinking (thoughtsTokenCount with no thought parts) is the one
    # thing a request without thinking config does not reproduce; compare the rest.
    strip = {"thoughts_token_count"}

    def shape(chunks: list[types.GenerateContentResponse]) -> list[tuple[Any, ...]]:
        return [(*s[:4], tuple(k for k in s[4] if k not in strip), *s[5:]) for s in _shape(chunks)]

    assert _collapse(shape(ours)) == _collapse(shape(real))
    assert len({c.response_id for c in ours}) == len({c.response_id for c in real}) == 1
    for usage in (_usage(real[-1]), _usage(ours[-1])):
        assert usage.total_token_count == (
            _n(usage.prompt_token_count)
            + _n(usage.candidates_token_count)
            + _n(usage.thoughts_token_count)
        )


async def test_emulator_matches_the_real_thinking_capture(
    client: genai.Client, replay: dict[str, list[dict[str, Any]]]
) -> None:
    replay["gemini-2.5-pro"] = _capture("gemini_thinking.jsonl")
    real_client = _client(replay["__url__"][0]["url"])
    try:
        real = await _stream(real_client, model="gemini-2.5-pro")
    finally:
        await _close(real_client)
    config = _knobs("chunk=20", thinking_config=types.ThinkingConfig(include_thoughts=True))
    ours = await _stream(client, model="gemini-2.5-pro", config=config)
    assert _collapse(_shape(ours)) == _collapse(_shape(real))
    # The first answer part carries the thought signature, in both.
    for chunks in (real, ours):
        first = next(c for c in chunks if not _parts(c)[0].thought)
        assert _parts(first)[0].thought_signature

"""The Anthropic dialect of the emulator, driven by the official ``anthropic`` SDK over a socket."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam, ThinkingConfigParam

from rxllm.emulator import Emulator
from rxllm.emulator._content import tokenize
from rxllm.testing import EMULATOR_KEY
from tests.providers.support import serve, sse_replay

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"

# The text of tests/fixtures/anthropic/anthropic_text.sse: ZWJ emoji, flags split across
# deltas, a combining accent, CJK, Hangul.
CAPTURE_TEXT = (
    "Hello! Here is a multilingual answer: café, naïve, Straße — 日本語のテキスト、中文字符 and "
    "한국어. Emoji: 🌍 👩\u200d💻 works; flag: 🇯🇵; combining: e\u0301 (é). Math: ∑ x² ≤ ∞."
)
USER: list[MessageParam] = [{"role": "user", "content": "Tell me something."}]
# anthropic 2.14 warns (DeprecationWarning) on claude-sonnet-4-5 and claude-opus-4-5.
MODEL = "claude-haiku-4-5"


def client_for(
    emu: Emulator, *, api_key: str = EMULATOR_KEY, **kw: Any
) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=emu.base_url("anthropic"), api_key=api_key, max_retries=0, **kw
    )


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    c = client_for(emulator)
    yield c
    await c.close()


def scripted(model: str, reply: str, **knobs: object) -> str:
    extra = "".join(f",{k}={v}" for k, v in knobs.items())
    return f"{model}~reply={urllib.parse.quote(reply, safe='')}{extra}"


async def events_of(stream: Any) -> list[Any]:
    return [event async for event in stream]


def text_of(events: list[Any]) -> str:
    return "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


# -- text, usage, finish reasons ---------------------------------------------------------------


async def test_stream_text_is_exact_with_multibyte_characters(
    client: anthropic.AsyncAnthropic,
) -> None:
    async with client.messages.stream(
        model=scripted(MODEL, CAPTURE_TEXT), max_tokens=1000, messages=USER
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == CAPTURE_TEXT
    assert len(pieces) == len(tokenize(CAPTURE_TEXT))
    assert final.content[0].type == "text"
    assert final.content[0].text == CAPTURE_TEXT
    assert final.stop_reason == "end_turn"
    assert final.model == MODEL  # the knobs are not echoed back


async def test_usage_is_split_between_message_start_and_cumulative_message_delta(
    client: anthropic.AsyncAnthropic,
) -> None:
    stream = await client.messages.create(
        model=scripted(MODEL, CAPTURE_TEXT, chunk=3),
        max_tokens=1000,
        messages=USER,
        system="Be brief.",
        stream=True,
    )
    events = await events_of(stream)
    start, delta = events[0], next(e for e in events if e.type == "message_delta")
    assert start.message.usage.input_tokens > 0
    assert start.message.usage.output_tokens == 1
    assert delta.usage.input_tokens == start.message.usage.input_tokens
    assert delta.usage.output_tokens == len(tokenize(CAPTURE_TEXT))
    assert delta.usage.output_tokens_details is None  # no thinking, no breakdown
    assert events[-1].type == "message_stop"


async def test_max_tokens_cuts_the_reply_with_stop_reason_max_tokens(
    client: anthropic.AsyncAnthropic,
) -> None:
    message = await client.messages.create(
        model=scripted("claude-haiku-4-5", CAPTURE_TEXT), max_tokens=5, messages=USER
    )
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert message.content[0].text == "".join(tokenize(CAPTURE_TEXT)[:5])
    assert message.usage.output_tokens == 5


async def test_stop_sequence_ends_the_reply_before_it(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(
        model=scripted(MODEL, CAPTURE_TEXT),
        max_tokens=1000,
        messages=USER,
        stop_sequences=["Straße", "nowhere"],
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "stop_sequence"
    assert final.stop_sequence == "Straße"
    assert final.content[0].type == "text"
    assert final.content[0].text == CAPTURE_TEXT[: CAPTURE_TEXT.index("Straße")]


async def test_non_streaming_message_matches_the_stream(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(model=MODEL, max_tokens=1000, messages=USER)
    async with client.messages.stream(model=MODEL, max_tokens=1000, messages=USER) as stream:
        final = await stream.get_final_message()
    assert message.id.startswith("msg_01")
    assert message.content[0].type == final.content[0].type == "text"
    assert message.content[0].text == final.content[0].text
    assert message.content[0].text.strip()
    assert message.usage.input_tokens == final.usage.input_tokens
    assert message.usage.output_tokens == final.usage.output_tokens
    assert message.stop_reason == final.stop_reason == "end_turn"


# -- reasoning -----------------------------------------------------------------------------------


async def test_thinking_block_streams_first_with_signature_then_text(
    client: anthropic.AsyncAnthropic,
) -> None:
    stream = await client.messages.create(
        model=MODEL,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=USER,
        stream=True,
    )
    events = await events_of(stream)
    assert _shape(events) == [
        ("message_start",),
        ("content_block_start", "0", "thinking"),
        ("content_block_delta", "0", "thinking_delta"),
        ("content_block_delta", "0", "signature_delta"),
        ("content_block_stop", "0"),
        ("content_block_start", "1", "text"),
        ("content_block_delta", "1", "text_delta"),
        ("content_block_stop", "1"),
        ("message_delta",),
        ("message_stop",),
    ]
    thinking = "".join(
        e.delta.thinking
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "thinking_delta"
    )
    usage = events[-2].usage
    assert thinking.strip()
    assert usage.output_tokens_details is not None
    assert usage.output_tokens_details.thinking_tokens == len(tokenize(thinking))
    assert usage.output_tokens == len(tokenize(thinking)) + len(tokenize(text_of(events)))


async def test_thinking_is_validated_like_the_api(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="must be greater than"):
        await client.messages.create(
            model=MODEL,
            max_tokens=1024,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=USER,
        )
    # On the API version before 2026-10-21 temperature exists, but must be 1 with thinking.
    with pytest.raises(anthropic.BadRequestError, match="may only be set to 1 when thinking"):
        await client.messages.create(
            model=MODEL,
            max_tokens=2048,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=USER,
            extra_body={"temperature": 0.2},
            extra_headers={"anthropic-version": "2023-06-01"},
        )


async def test_sampling_parameters_are_rejected_on_the_sdks_api_version(
    client: anthropic.AsyncAnthropic,
) -> None:
    # anthropic 2.x sends anthropic-version 2026-10-21, which dropped temperature/top_p/top_k.
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model=MODEL, max_tokens=10, messages=USER, extra_body={"temperature": 1.0}
        )
    assert caught.value.api_message == "temperature: Extra inputs are not permitted"
    old = await client.messages.create(
        model=MODEL,
        max_tokens=10,
        messages=USER,
        extra_body={"temperature": 0.5},
        extra_headers={"anthropic-version": "2023-06-01"},
    )
    assert old.stop_reason == "max_tokens"


# -- continuation from an assistant prefill -----------------------------------------------------


async def test_assistant_prefill_continues_the_same_reply(client: anthropic.AsyncAnthropic) -> None:
    full = await client.messages.create(model=MODEL, max_tokens=1000, messages=USER)
    assert full.content[0].type == "text"
    text = full.content[0].text
    cut = len(text) // 2
    rest = await client.messages.create(
        model=MODEL,
        max_tokens=1000,
        messages=[*USER, {"role": "assistant", "content": text[:cut]}],
    )
    assert rest.content[0].type == "text"
    assert text[:cut] + rest.content[0].text == text
    assert rest.usage.output_tokens < full.usage.output_tokens


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_class", "status", "kind"),
    [
        ("rate_limited", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("overloaded", anthropic.OverloadedError, 529, "overloaded_error"),
        ("server_error", anthropic.InternalServerError, 500, "api_error"),
        ("invalid_key", anthropic.AuthenticationError, 401, "authentication_error"),
        ("invalid_request", anthropic.BadRequestError, 400, "invalid_request_error"),
        ("context_too_long", anthropic.BadRequestError, 400, "invalid_request_error"),
        ("model_not_found", anthropic.NotFoundError, 404, "not_found_error"),
    ],
)
async def test_before_stream_faults_raise_the_sdk_error(
    client: anthropic.AsyncAnthropic,
    fault: str,
    error_class: type[anthropic.APIStatusError],
    status: int,
    kind: str,
) -> None:
    with pytest.raises(error_class) as caught:
        await client.messages.create(
            model=f"claude-haiku-4-5~fault={fault}", max_tokens=100, messages=USER, stream=True
        )
    error = caught.value
    assert error.status_code == status
    assert error.type == kind
    assert isinstance(error.body, dict)
    assert list(error.body) == ["type", "error", "request_id"]
    assert error.request_id is not None
    assert error.request_id == error.body["request_id"]
    assert error.request_id.startswith("req_011C")
    if fault == "context_too_long":
        assert error.api_message is not None
        assert error.api_message.startswith("prompt is too long: ")
        assert error.api_message.endswith(" tokens > 200000 maximum")


async def test_rate_limit_carries_retry_after_the_sdk_reads(
    client: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(
            model="claude-haiku-4-5~fault=rate_limited,retry_after=7",
            max_tokens=100,
            messages=USER,
        )
    headers = caught.value.response.headers
    assert client._parse_retry_after_header(headers) == 7
    assert headers["retry-after"] == "7"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "30000"
    assert headers["x-should-retry"] == "true"


async def test_wrong_key_is_an_authentication_error_and_is_recorded(emulator: Emulator) -> None:
    c = client_for(emulator, api_key="sk-wrong-key")
    try:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await c.messages.create(model=MODEL, max_tokens=10, messages=USER)
    finally:
        await c.close()
    assert caught.value.api_message == "invalid x-api-key"
    assert emulator.requests[-1].api_key == "sk-wrong-key"


async def test_fail_the_first_request_then_succeed(client: anthropic.AsyncAnthropic) -> None:
    model = "claude-haiku-4-5~fault=overloaded,times=1"
    with pytest.raises(anthropic.OverloadedError):
        await client.messages.create(model=model, max_tokens=10, messages=USER)
    message = await client.messages.create(model=model, max_tokens=10, messages=USER)
    assert message.stop_reason == "max_tokens"


async def test_drop_cuts_the_connection_after_the_content_events(
    client: anthropic.AsyncAnthropic, emulator: Emulator
) -> None:
    stream = await client.messages.create(
        model=scripted(MODEL, CAPTURE_TEXT, fault="drop", after=4),
        max_tokens=1000,
        messages=USER,
        stream=True,
    )
    received: list[Any] = []
    # anthropic 2.x lets transport failures during iteration through unwrapped.
    with pytest.raises(httpx2.RemoteProtocolError):  # noqa: PT012 - fails while iterating
        async for event in stream:
            received.append(event)
    assert text_of(received) == "".join(tokenize(CAPTURE_TEXT)[:4])
    assert not emulator.requests[-1].disconnected  # the emulator cut it on purpose


async def test_truncate_ends_cleanly_without_message_stop(client: anthropic.AsyncAnthropic) -> None:
    stream = await client.messages.create(
        model=scripted(MODEL, CAPTURE_TEXT, fault="truncate", after=5),
        max_tokens=1000,
        messages=USER,
        stream=True,
    )
    events = await events_of(stream)  # the SDK reports success
    assert text_of(events) == "".join(tokenize(CAPTURE_TEXT)[:5])
    assert {e.type for e in events}.isdisjoint({"message_delta", "message_stop"})


async def test_error_event_mid_stream_is_an_api_status_error_with_status_200(
    client: anthropic.AsyncAnthropic,
) -> None:
    stream = await client.messages.create(
        model=scripted(MODEL, CAPTURE_TEXT, fault="error_event", after=2),
        max_tokens=1000,
        messages=USER,
        stream=True,
    )
    received: list[Any] = []
    with pytest.raises(anthropic.APIStatusError) as caught:  # noqa: PT012
        async for event in stream:
            received.append(event)
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"
    assert text_of(received) == "".join(tokenize(CAPTURE_TEXT)[:2])


async def test_stall_keeps_the_connection_open_until_the_client_leaves(
    emulator: Emulator,
) -> None:
    c = client_for(emulator, timeout=0.3)
    try:
        stream = await c.messages.create(
            model="claude-haiku-4-5~fault=stall,after=1",
            max_tokens=1000,
            messages=USER,
            stream=True,
        )
        with pytest.raises(httpx2.ReadTimeout):
            async for _ in stream:
                pass
    finally:
        await c.close()
    gone = await emulator.wait_for_disconnects_async(1)
    assert [r.fault for r in gone] == ["stall"]


@pytest.mark.parametrize(
    ("fault", "sdk_error"),
    [
        ("drop", anthropic.APIConnectionError),
        ("truncate", anthropic.APIConnectionError),
        ("error_event", anthropic.OverloadedError),  # no stream to carry it: a 529
        ("stall", anthropic.APITimeoutError),
    ],
)
async def test_mid_stream_faults_on_a_non_streaming_request(
    emulator: Emulator, fault: str, sdk_error: type[anthropic.APIError]
) -> None:
    c = client_for(emulator, timeout=0.3)
    try:
        with pytest.raises(sdk_error):
            await c.messages.create(model=f"{MODEL}~fault={fault}", max_tokens=10, messages=USER)
    finally:
        await c.close()
    if fault == "stall":
        assert len(await emulator.wait_for_disconnects_async(1)) == 1


async def test_client_cancel_is_recorded_as_a_disconnect(
    client: anthropic.AsyncAnthropic, emulator: Emulator
) -> None:
    stream = await client.messages.create(
        model="claude-haiku-4-5~tps=100,words=2000", max_tokens=10000, messages=USER, stream=True
    )
    seen = 0
    async for event in stream:
        seen += event.type == "content_block_delta"
        if seen == 3:
            break
    await stream.close()
    gone = await emulator.wait_for_disconnects_async(1)
    assert len(gone) == 1
    assert gone[0].disconnected
    assert not gone[0].completed


# -- what the raw wire looks like ----------------------------------------------------------------


async def test_x_api_key_is_accepted_and_malformed_input_gets_the_api_400(
    emulator: Emulator,
) -> None:
    url = emulator.base_url("anthropic") + "/v1/messages"
    headers = {"x-api-key": EMULATOR_KEY, "anthropic-version": "2023-06-01"}
    body = {"model": MODEL, "max_tokens": 8, "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers=headers) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            raw = (await response.read()).decode()
        async with session.post(url, data=b"{not json", headers=headers) as response:
            bad_json = response.status, await response.json()
        async with session.post(
            url, json={**body, "model": "claude~fault=nonsense"}, headers=headers
        ) as response:
            bad_knob = response.status, await response.json()
        async with session.post(url, json={"model": "claude"}, headers=headers) as response:
            missing = response.status, await response.json()
    assert raw.startswith('event: message_start\ndata: {"type":"message_start","message":{"model"')
    assert raw.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert "\\u" not in raw  # raw UTF-8 like the API
    names = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    for status, payload in (bad_json, bad_knob, missing):
        assert status == 400
        assert payload["type"] == "error"
        assert payload["error"]["type"] == "invalid_request_error"
    assert "fault" in bad_knob[1]["error"]["message"]
    assert missing[1]["error"]["message"] == "max_tokens: Field required"


async def test_model_listing(
    client: anthropic.AsyncAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rxllm.catalog

    ids = ["claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5"]
    monkeypatch.setattr(
        rxllm.catalog, "models", lambda provider: ids if provider == "anthropic" else []
    )
    page = await client.models.list()
    assert [m.id for m in page.data] == ids
    assert all(m.type == "model" and m.display_name.startswith("Claude ") for m in page.data)
    one = await client.models.retrieve("claude-opus-4-5")
    assert one.id == "claude-opus-4-5"
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("claude-nonexistent")


# -- fidelity: the SDK's view of a real capture and of the emulator agree -----------------------


async def _events_from_capture(name: str) -> list[Any]:
    runner, url = await serve("/v1/messages", sse_replay((FIXTURES / name).read_bytes()))
    c = anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0)
    try:
        stream = await c.messages.create(model=MODEL, max_tokens=4096, messages=USER, stream=True)
        return await events_of(stream)
    finally:
        await c.close()
        await runner.cleanup()


def _shape(events: list[Any]) -> list[tuple[str, ...]]:
    """Event types in order (runs of the same delta collapsed), with block and delta kinds."""
    out: list[tuple[str, ...]] = []
    for e in events:
        if e.type == "content_block_start":
            item: tuple[str, ...] = (e.type, str(e.index), e.content_block.type)
        elif e.type == "content_block_delta":
            item = (e.type, str(e.index), e.delta.type)
        elif e.type == "content_block_stop":
            item = (e.type, str(e.index))
        else:
            item = (e.type,)
        if not out or out[-1] != item or e.type != "content_block_delta":
            out.append(item)
    return out


def _usage_fields(usage: Any) -> set[str]:
    return {name for name in usage.model_fields_set if getattr(usage, name) is not None}


@pytest.mark.parametrize(
    ("capture", "thinking"),
    [("anthropic_text.sse", False), ("anthropic_thinking.sse", True)],
)
async def test_sdk_sees_the_same_structure_in_a_capture_and_the_emulator(
    client: anthropic.AsyncAnthropic, capture: str, thinking: bool
) -> None:
    real = await _events_from_capture(capture)
    model = scripted(MODEL, text_of(real), reasoning="on" if thinking else "off")
    config: ThinkingConfigParam = (
        {"type": "enabled", "budget_tokens": 1024} if thinking else {"type": "disabled"}
    )
    stream = await client.messages.create(
        model=model, max_tokens=4096, messages=USER, stream=True, thinking=config
    )
    ours = await events_of(stream)

    assert _shape(ours) == _shape(real)
    assert text_of(ours) == text_of(real)
    real_start, our_start = real[0].message, ours[0].message
    for field in ("type", "role", "content", "stop_reason", "stop_sequence"):
        assert getattr(our_start, field) == getattr(real_start, field)
    assert list(json.loads(our_start.to_json())) == list(json.loads(real_start.to_json()))
    assert _usage_fields(our_start.usage) == _usage_fields(real_start.usage)
    assert our_start.usage.output_tokens >= 1
    real_delta = next(e for e in real if e.type == "message_delta")
    our_delta = next(e for e in ours if e.type == "message_delta")
    assert our_delta.delta.stop_reason == real_delta.delta.stop_reason == "end_turn"
    # Everything the real message_delta usage carries, ours carries too (plus the thinking
    # breakdown, which newer API versions add when thinking is on).
    assert _usage_fields(real_delta.usage) <= _usage_fields(our_delta.usage)
    assert our_delta.usage.input_tokens == our_start.usage.input_tokens
    if thinking:
        signature = next(
            e for e in ours if e.type == "content_block_delta" and e.delta.type == "signature_delta"
        )
        assert signature.delta.signature

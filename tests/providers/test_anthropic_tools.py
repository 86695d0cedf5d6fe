"""Tool calls, structured output and content parts on AnthropicProvider, through the official
SDK against the emulator (and the real tool-use captures)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pydantic
import pytest
from aiohttp import web

from rxllm import errors
from rxllm.consume import collect as collect_result
from rxllm.content import TextPart, document, image
from rxllm.emulator import Emulator, with_knobs
from rxllm.events import (
    FinishReason,
    ObjectEvent,
    PartialObjectEvent,
    StreamEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
)
from rxllm.providers.anthropic import AnthropicProvider
from rxllm.request import Message
from rxllm.structured import ResponseFormat
from rxllm.testing import EMULATOR_KEY
from rxllm.tools import Tool, ToolCall

from .support import calls_of, deltas_of, done_of, run, serve, sse_replay, text_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
MODEL = "claude-haiku-4-5"
WEATHER = Tool(
    "get_weather",
    "The current weather in a city.",
    {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
)
TIME = Tool(
    "get_time",
    "The local time in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PDF = b"%PDF-1.4\n%fake\n"


@pytest.fixture
async def claude(emulator: Emulator) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(api_key=EMULATOR_KEY, base_url=emulator.base_url("anthropic"))
    yield provider
    await provider.aclose()


# -- 1. a streamed call -------------------------------------------------------------------------


async def test_a_streamed_call_concatenates_to_its_arguments_and_completes(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    events, error = await run(claude, "Weather in Oslo?", model=MODEL, tools=[WEATHER])
    assert error is None
    (call,) = calls_of(events)
    pieces = deltas_of(events, 0)
    assert pieces[0].id == call.id
    assert pieces[0].name == "get_weather"
    assert all(p.id is None and p.name is None for p in pieces[1:])
    assert json.loads("".join(p.arguments for p in pieces)) == call.arguments
    assert isinstance(call.arguments["location"], str)
    assert call.id.startswith("toolu_01")
    assert len(call.id) == len("toolu_01T1x1fJ34qAmk2tNTrN7Up6")
    assert call.name == "get_weather"
    assert call.index == 0
    assert not call.server_side
    assert events.index(call) < len(events) - 1  # before done
    end = done_of(events)
    assert end.finish_reason is FinishReason.TOOL_CALLS
    assert end.details["stop_reason"] == "tool_use"

    result = await collect_result(claude.stream("Weather in Oslo?", model=MODEL, tools=[WEATHER]))
    assert result.tool_calls == (ToolCall(call.id, call.name, call.arguments),)
    body = emulator.requests[-1].body
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "input_schema": dict(WEATHER.parameters),
        }
    ]
    assert "tool_choice" not in body


# -- 2. the real captures -----------------------------------------------------------------------


async def _serve(name: str, data: bytes | None = None) -> tuple[web.AppRunner, str]:
    data = (FIXTURES / name).read_bytes() if data is None else data
    return await serve("/v1/messages", sse_replay(data))


async def _capture(name: str, tool: Tool) -> tuple[list[StreamEvent], Exception | None]:
    runner, url = await _serve(name)
    provider = AnthropicProvider(api_key="k", base_url=url)
    try:
        return await run(provider, "Weather?", model=MODEL, tools=[tool])
    finally:
        await provider.aclose()
        await runner.cleanup()


async def test_the_real_tool_use_capture_gives_its_call() -> None:
    events, error = await _capture("anthropic_tool_use.sse", WEATHER)
    assert error is None
    assert text_of(events) == "Okay, let's check the weather for San Francisco, CA:"
    (call,) = calls_of(events)
    assert call == ToolCallEvent(
        id="toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        name="get_weather",
        arguments={"location": "San Francisco, CA", "unit": "fahrenheit"},
        index=0,
    )
    assert "".join(d.arguments for d in deltas_of(events, 0)) == (
        '{"location": "San Francisco, CA", "unit": "fahrenheit"}'
    )
    end = done_of(events)
    assert end.finish_reason is FinishReason.TOOL_CALLS
    assert end.usage.completion_tokens == 89


async def test_the_real_truncated_capture_is_length_with_the_incomplete_call() -> None:
    make_file = Tool("make_file", "", {"type": "object", "properties": {}})
    events, error = await _capture("anthropic_tool_use_truncated.sse", make_file)
    assert error is None
    assert calls_of(events) == []  # max_tokens cut the arguments: no complete call
    end = done_of(events)
    assert end.finish_reason is FinishReason.LENGTH
    (cut,) = end.details["incomplete_tool_calls"]
    assert cut["id"] == "toolu_01EKqbqmZrGRXy18eN7m9kvY"
    assert cut["name"] == "make_file"
    assert cut["arguments"].startswith('{"filename": "taxes.txt", "lines_of_text": [')
    assert cut["arguments"].endswith('\n"Filing taxes')


async def _sdk_events(
    base_url: str, model: str, max_tokens: int = 4096, **params: Any
) -> list[Any]:
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key=EMULATOR_KEY, max_retries=0)
    try:
        stream = await client.messages.create(
            model=model,
            max_tokens=max_tokens,
            messages=[{"role": "user", "content": "Weather in San Francisco?"}],
            stream=True,
            **params,
        )
        return [event async for event in stream]
    finally:
        await client.close()


def _shape(events: list[Any]) -> list[tuple[str, ...]]:
    """Event types in order (runs of one delta kind collapsed), block and delta kinds, and the
    keys of each tool_use block and input_json_delta."""
    out: list[tuple[str, ...]] = []
    for e in events:
        if e.type == "content_block_start":
            block = json.loads(e.content_block.to_json())
            item: tuple[str, ...] = (e.type, str(e.index), *sorted(block), block["type"])
        elif e.type == "content_block_delta":
            item = (e.type, str(e.index), *sorted(json.loads(e.delta.to_json())))
        elif e.type == "content_block_stop":
            item = (e.type, str(e.index))
        else:
            item = (e.type,)
        if not out or out[-1] != item or e.type != "content_block_delta":
            out.append(item)
    return out


@pytest.mark.parametrize(
    ("capture", "cut"),
    [("anthropic_tool_use.sse", False), ("anthropic_tool_use_truncated.sse", True)],
)
async def test_the_emulators_tool_stream_has_the_captures_shape(
    emulator: Emulator, capture: str, cut: bool
) -> None:
    runner, url = await _serve(capture)
    try:
        real = await _sdk_events(url, MODEL)
    finally:
        await runner.cleanup()
    real_text = "".join(
        e.delta.text
        for e in real
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    real_start = next(e for e in real if e.type == "content_block_start" and e.index == 1)
    name = real_start.content_block.name
    knobs: dict[str, object] = {"reply": real_text}
    if cut:
        knobs["args"] = json.dumps({"filename": "taxes.txt", "lines_of_text": ["a"] * 40})
    tools = [{"name": name, "input_schema": dict(WEATHER.parameters)}]
    ours = await _sdk_events(
        emulator.base_url("anthropic"),
        with_knobs(MODEL, **knobs),
        tools=tools,
        **({"max_tokens": 60} if cut else {}),
    )
    assert _shape(ours) == _shape(real)
    our_start = next(e for e in ours if e.type == "content_block_start" and e.index == 1)
    assert our_start.content_block.name == name
    assert our_start.content_block.input == real_start.content_block.input == {}
    our_id, real_id = our_start.content_block.id, real_start.content_block.id
    assert our_id[:8] == real_id[:8] == "toolu_01"
    assert len(our_id) == len(real_id)
    assert our_id[8:].isalnum()
    firsts = [
        next(e for e in events if e.type == "content_block_delta" and e.index == 1)
        for events in (ours, real)
    ]
    assert firsts[0].delta.partial_json == firsts[1].delta.partial_json == ""
    real_stop = next(e for e in real if e.type == "message_delta").delta.stop_reason
    our_stop = next(e for e in ours if e.type == "message_delta").delta.stop_reason
    assert our_stop == real_stop == ("max_tokens" if cut else "tool_use")


def _sse(*payloads: dict[str, Any]) -> bytes:
    return b"".join(f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads)


# The documented shape of a web search (Claude docs, "Web search tool", streaming): the
# model's server_tool_use block, the search's result block, then the answer.
_SERVER_TOOL_STREAM = _sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_01ServerTool",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 40, "output_tokens": 1},
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {
            "type": "server_tool_use",
            "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
            "name": "web_search",
            "input": {},
        },
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": '{"query": "weather'},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": ' NYC today"}'},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
            "content": [
                {
                    "type": "web_search_result",
                    "title": "Weather NYC",
                    "url": "https://example.com/nyc",
                    "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5",
                    "page_age": None,
                }
            ],
        },
    },
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Sunny."}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 30, "server_tool_use": {"web_search_requests": 1}},
    },
    {"type": "message_stop"},
)


async def test_a_server_tool_is_reported_server_side_and_not_as_deltas() -> None:
    runner, url = await _serve("", _SERVER_TOOL_STREAM)
    provider = AnthropicProvider(api_key="k", base_url=url)
    try:
        events, error = await run(
            provider,
            provider.request(
                "Weather in NYC?",
                model=MODEL,
                options={"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            ),
        )
    finally:
        await provider.aclose()
        await runner.cleanup()
    assert error is None
    assert not [e for e in events if isinstance(e, ToolCallDeltaEvent)]
    assert calls_of(events) == [
        ToolCallEvent(
            id="srvtoolu_014hJH82Qum7Td6UV8gDXThB",
            name="web_search",
            arguments={"query": "weather NYC today"},
            index=0,
            server_side=True,
        )
    ]
    assert text_of(events) == "Sunny."
    assert done_of(events).finish_reason is FinishReason.STOP


# -- 3. two rounds --------------------------------------------------------------------------------


async def test_two_rounds_end_with_the_answer_and_the_vendors_shapes_on_the_wire(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    first = await collect_result(
        claude.stream("Weather and time in Oslo?", model=MODEL, tools=[WEATHER, TIME])
    )
    (call,) = first.tool_calls
    history = [
        Message("user", "Weather and time in Oslo?"),
        Message("assistant", first.text, tool_calls=first.tool_calls),
        Message.tool_result(call.id, "12°C, light rain", name=call.name),
    ]
    second = await collect_result(
        claude.stream(messages=history, model=MODEL, tools=[WEATHER, TIME])
    )
    assert second.text == "The tools said: 12°C, light rain."
    assert second.finish_reason is FinishReason.STOP
    assert second.tool_calls == ()
    messages = emulator.requests[-1].body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        ],
    }
    assert messages[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12°C, light rain"}],
    }


async def test_consecutive_results_are_one_user_turn_and_errors_are_marked(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    model = with_knobs(MODEL, tool_calls=2)
    first = await collect_result(claude.stream("Both?", model=model, tools=[WEATHER, TIME]))
    a, b = first.tool_calls
    history = [
        Message("user", "Both?"),
        Message("assistant", "", tool_calls=first.tool_calls),
        Message.tool_result(a.id, "sunny"),
        Message.tool_result(b.id, "no clock here", is_error=True),
        Message("user", "Be brief."),
    ]
    second = await collect_result(
        claude.stream(messages=history, model=model, tools=[WEATHER, TIME])
    )
    assert second.finish_reason is FinishReason.STOP
    messages = emulator.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": a.id, "content": "sunny"},
        {"type": "tool_result", "tool_use_id": b.id, "content": "no clock here", "is_error": True},
        {"type": "text", "text": "Be brief."},
    ]


# -- 4. parallel calls ----------------------------------------------------------------------------


async def test_parallel_calls_keep_distinct_ids_and_indexes(claude: AnthropicProvider) -> None:
    events, error = await run(
        claude, "Both?", model=with_knobs(MODEL, tool_calls=2), tools=[WEATHER, TIME]
    )
    assert error is None
    first, second = calls_of(events)
    assert (first.index, second.index) == (0, 1)
    assert (first.name, second.name) == ("get_weather", "get_time")
    assert first.id != second.id
    assert deltas_of(events, 0)[0].id == first.id
    assert deltas_of(events, 1)[0].id == second.id
    for call in (first, second):
        assert (
            json.loads("".join(d.arguments for d in deltas_of(events, call.index)))
            == call.arguments
        )
    assert done_of(events).finish_reason is FinishReason.TOOL_CALLS


# -- 5. tool_choice and parallel_tool_calls on the wire --------------------------------------------


@pytest.mark.parametrize(
    ("choice", "parallel", "wire"),
    [
        ("required", None, {"type": "any"}),
        ("get_time", None, {"type": "tool", "name": "get_time"}),
        ("none", None, {"type": "none"}),
        ("auto", None, {"type": "auto"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ],
)
async def test_tool_choice_reaches_the_wire_in_anthropics_shape(
    claude: AnthropicProvider,
    emulator: Emulator,
    choice: str | None,
    parallel: bool | None,
    wire: dict[str, Any],
) -> None:
    events, error = await run(
        claude,
        "Go",
        model=with_knobs(MODEL, tool_calls=2),
        tools=[WEATHER, TIME],
        tool_choice=choice,
        parallel_tool_calls=parallel,
    )
    assert error is None
    assert emulator.requests[-1].body["tool_choice"] == wire
    made = [c.name for c in calls_of(events)]
    if choice == "none":
        assert made == []
        assert done_of(events).finish_reason is FinishReason.STOP
    elif choice == "get_time":
        assert made == ["get_time", "get_time"]
    elif parallel is False:
        assert len(made) == 1  # the emulated model obeys disable_parallel_tool_use
    else:
        assert len(made) == 2


# -- 6. structured output -------------------------------------------------------------------------


class City(pydantic.BaseModel):
    name: str
    population: int
    coastal: bool


async def test_structured_output_streams_partial_objects_and_a_validated_instance(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    events, error = await run(claude, "A city", model=MODEL, response_format=City)
    assert error is None
    partials = [e.value for e in events if isinstance(e, PartialObjectEvent)]
    assert len(partials) > 2
    assert all(isinstance(p, dict) for p in partials)
    assert len(partials[-1]) >= len(partials[0])
    (obj,) = [e.value for e in events if isinstance(e, ObjectEvent)]
    assert isinstance(obj, City)
    assert City.model_validate_json(text_of(events)) == obj
    body = emulator.requests[-1].body
    assert body["output_config"] == {
        "format": {
            "type": "json_schema",
            "schema": anthropic.transform_schema(dict(ResponseFormat.of(City).schema)),
        }
    }
    assert body["output_config"]["format"]["schema"]["additionalProperties"] is False
    assert "tools" not in body  # native, not a forced tool
    result = await collect_result(claude.stream("A city", model=MODEL, response_format=City))
    assert isinstance(result.object, City)


async def test_a_reply_that_does_not_fit_raises_with_the_raw_text_after_the_tokens(
    claude: AnthropicProvider,
) -> None:
    reply = '{"name": "Oslo", "population": "many"}'
    events, error = await run(
        claude, "A city", model=with_knobs(MODEL, reply=reply), response_format=City
    )
    assert isinstance(error, errors.StructuredOutputError)
    assert error.raw_text == reply
    assert text_of(events) == reply


# -- 7. content parts -----------------------------------------------------------------------------


async def test_images_and_documents_reach_the_wire_in_anthropics_shape(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    parts = (
        TextPart("What are these?"),
        image(PNG),
        image("https://example.com/cat.jpg"),
        document(PDF),
        document("https://example.com/paper.pdf"),
    )
    request = claude.request(messages=[Message("user", parts)], model=MODEL)
    events, error = await run(claude, request)
    assert error is None
    assert done_of(events).finish_reason is FinishReason.STOP
    content = emulator.requests[-1].body["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What are these?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": image(PNG).base64},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "document",
            "source": {
                "type": "base64",
                "media_type": "application/pdf",
                "data": document(PDF).base64,
            },
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
    ]


async def test_the_emulator_refuses_a_malformed_part_like_the_api(emulator: Emulator) -> None:
    bad = {"type": "base64", "media_type": "image/bmp", "data": "AA=="}
    messages: Any = [{"role": "user", "content": [{"type": "image", "source": bad}]}]
    client = anthropic.AsyncAnthropic(
        base_url=emulator.base_url("anthropic"), api_key=EMULATOR_KEY, max_retries=0
    )
    try:
        with pytest.raises(anthropic.BadRequestError, match="media_type"):
            await client.messages.create(model=MODEL, max_tokens=64, messages=messages)
    finally:
        await client.close()


async def test_an_unsupported_part_fails_before_any_request(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    # Anthropic takes all four kinds of part; with fewer, the rest are refused up front.
    claude.content_parts = frozenset({"image"})  # type: ignore[misc]
    before = len(emulator.requests)
    message = Message("user", (TextPart("Read"), document(PDF)))
    with pytest.raises(errors.UnsupportedContentError, match="anthropic cannot take document"):
        await collect_result(claude.stream(messages=[message], model=MODEL))
    assert len(emulator.requests) == before


# -- 8. faults inside the arguments ------------------------------------------------------------


async def test_a_drop_inside_the_arguments_is_interrupted_without_the_call(
    claude: AnthropicProvider,
) -> None:
    events, error = await run(
        claude, "Weather?", model=with_knobs(MODEL, fault="drop", after=2), tools=[WEATHER]
    )
    assert type(error) is errors.StreamInterruptedError
    assert deltas_of(events, 0)  # the call had started
    assert calls_of(events) == []


async def test_arguments_that_are_not_json_name_the_tool(claude: AnthropicProvider) -> None:
    events, error = await run(
        claude, "Weather?", model=with_knobs(MODEL, args="{not json"), tools=[WEATHER]
    )
    assert isinstance(error, errors.ToolArgumentsError)
    assert error.tool_name == "get_weather"
    assert "get_weather" in str(error)
    assert calls_of(events) == []


async def test_max_tokens_inside_the_arguments_is_length_with_the_incomplete_call(
    claude: AnthropicProvider,
) -> None:
    args = json.dumps({"location": "Oslo " * 30})
    events, error = await run(
        claude, "Weather?", model=with_knobs(MODEL, args=args), tools=[WEATHER], max_tokens=8
    )
    assert error is None
    assert calls_of(events) == []
    end = done_of(events)
    assert end.finish_reason is FinishReason.LENGTH
    (cut,) = end.details["incomplete_tool_calls"]
    assert args.startswith(cut["arguments"])
    assert cut["name"] == "get_weather"


# -- non-streaming: the emulator's JSON message carries the calls too -----------------------------


async def test_the_non_streaming_message_carries_tool_use_blocks(emulator: Emulator) -> None:
    client = anthropic.AsyncAnthropic(
        base_url=emulator.base_url("anthropic"), api_key=EMULATOR_KEY, max_retries=0
    )
    try:
        message = await client.messages.create(
            model=MODEL,
            max_tokens=256,
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[{"name": "get_weather", "input_schema": dict(WEATHER.parameters)}],
            tool_choice={"type": "any"},
        )
    finally:
        await client.close()
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.id.startswith("toolu_01")
    assert isinstance(block.input["location"], str)


async def test_reasoning_is_left_out_when_answering_calls_and_said_so(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    first = await collect_result(
        claude.stream("Weather?", model=MODEL, tools=[WEATHER], reasoning=True)
    )
    assert emulator.requests[-1].body["thinking"]["type"] == "enabled"
    (call,) = first.tool_calls
    history = [
        Message("user", "Weather?"),
        Message("assistant", first.text, tool_calls=first.tool_calls),
        Message.tool_result(call.id, "sunny"),
    ]
    second = await collect_result(
        claude.stream(messages=history, model=MODEL, tools=[WEATHER], reasoning=True)
    )
    assert second.text == "The tools said: sunny."
    assert "thinking" not in emulator.requests[-1].body
    assert "reasoning" in second.details["ignored"]


async def test_the_emulator_wants_the_thinking_block_back_with_tool_results(
    emulator: Emulator,
) -> None:
    # What the real API answers when a tool loop with thinking on drops the thinking block.
    messages: Any = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01A", "name": "w", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A"}]},
    ]
    client = anthropic.AsyncAnthropic(
        base_url=emulator.base_url("anthropic"), api_key=EMULATOR_KEY, max_retries=0
    )
    try:
        with pytest.raises(anthropic.BadRequestError, match="found `tool_use`"):
            await client.messages.create(
                model=MODEL,
                max_tokens=2048,
                messages=messages,
                thinking={"type": "enabled", "budget_tokens": 1024},
            )
        with pytest.raises(anthropic.BadRequestError, match="corresponding `tool_use` block"):
            await client.messages.create(
                model=MODEL, max_tokens=64, messages=[messages[0], messages[2]]
            )
        with pytest.raises(anthropic.BadRequestError, match="without `tool_result` blocks"):
            await client.messages.create(model=MODEL, max_tokens=64, messages=messages[:2])
    finally:
        await client.close()


async def test_reasoning_is_left_out_of_a_forced_call(
    claude: AnthropicProvider, emulator: Emulator
) -> None:
    result = await collect_result(
        claude.stream(
            "Weather?", model=MODEL, tools=[WEATHER], tool_choice="required", reasoning="low"
        )
    )
    assert len(result.tool_calls) == 1
    assert "thinking" not in emulator.requests[-1].body
    assert result.details["ignored"] == ("reasoning",)

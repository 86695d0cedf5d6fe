"""Tool calls, structured output and content parts on ``OpenAIProvider``: through the official
SDK against the emulator, and the verbatim tool-call capture from api.openai.com."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest
import pytest_asyncio
from aiohttp import web
from openai.types.chat import ChatCompletionChunk

from rxllm import errors
from rxllm.content import DocumentPart, ImagePart, TextPart
from rxllm.emulator import Emulator, with_knobs
from rxllm.events import (
    DoneEvent,
    FinishReason,
    ObjectEvent,
    PartialObjectEvent,
    TokenEvent,
)
from rxllm.providers.openai import OpenAIProvider
from rxllm.request import Message, StreamRequest
from rxllm.structured import ResponseFormat
from rxllm.testing import EMULATOR_KEY
from rxllm.tools import Tool, ToolCall
from tests.providers.support import calls_of, deltas_of, done_of, run, text_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"

WEATHER = Tool(
    name="get_weather",
    description="The current weather in a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "units": {"type": "string", "enum": ["c", "f"]},
        },
        "required": ["city", "units"],
    },
)
STOCK = Tool(
    name="get_stock_price",
    description="A stock's last price.",
    parameters={
        "type": "object",
        "properties": {"ticker": {"type": "string"}, "exchange": {"type": "string"}},
        "required": ["ticker", "exchange"],
    },
)


class Person(pydantic.BaseModel):
    name: str
    age: int
    languages: list[str] = []


@pytest_asyncio.fixture
async def provider(emulator: Emulator) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key=EMULATOR_KEY, base_url=emulator.base_url("openai"))
    yield p
    await p.aclose()


# -- 1. a streamed call ------------------------------------------------------------------------


async def test_streamed_call_deltas_concatenate_to_the_parsed_arguments(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    events, error = await run(provider, "Weather in Oslo?", model="gpt-4o", tools=[WEATHER])

    assert error is None
    fragments = deltas_of(events)
    assert len(fragments) > 2  # the arguments arrive in pieces
    assert {d.index for d in fragments} == {0}
    assert fragments[0].name == "get_weather"
    assert fragments[0].id is not None
    assert CALL_ID.match(fragments[0].id)
    assert all(d.id is None and d.name is None for d in fragments[1:])
    (call,) = calls_of(events)
    assert call.arguments == json.loads("".join(d.arguments for d in fragments))
    assert set(call.arguments) == {"city", "units"}
    assert (call.id, call.name, call.index) == (fragments[0].id, "get_weather", 0)
    assert events.index(call) < len(events) - 1  # before done
    done = done_of(events)
    assert done.finish_reason is FinishReason.TOOL_CALLS
    assert done.details["finish_reason"] == "tool_calls"
    assert done.usage.completion_tokens == len(
        [d for d in fragments if d.arguments]
    )  # one token per fragment in the emulator
    assert emulator.requests[-1].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The current weather in a city.",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]
    assert "tool_choice" not in emulator.requests[-1].body  # the vendor's default
    assert "parallel_tool_calls" not in emulator.requests[-1].body

    result = await provider.complete("Weather in Oslo?", model="gpt-4o", tools=[WEATHER])
    assert result.finish_reason is FinishReason.TOOL_CALLS
    assert result.tool_calls == (ToolCall(call.id, "get_weather", call.arguments),)


async def test_text_before_a_call_streams_as_tokens(provider: OpenAIProvider) -> None:
    events, error = await run(
        provider, "Weather?", model=with_knobs("gpt-4o", reply="Let me check."), tools=[WEATHER]
    )

    assert error is None
    assert text_of(events) == "Let me check."
    assert [c.name for c in calls_of(events)] == ["get_weather"]
    last_token = max(i for i, e in enumerate(events) if isinstance(e, TokenEvent))
    assert last_token < events.index(deltas_of(events)[0])


# -- 2. the real capture, and the emulator against it ------------------------------------------


@pytest_asyncio.fixture
async def capture_server() -> AsyncIterator[str]:
    """Answers a chat completion with the capture named by the request's model, verbatim."""

    async def serve(request: web.Request) -> web.Response:
        name = (await request.json())["model"]
        return web.Response(body=(FIXTURES / name).read_bytes(), content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_real_parallel_tool_call_capture(capture_server: str) -> None:
    captured = OpenAIProvider(api_key="sk-capture", base_url=capture_server)
    try:
        events, error = await run(
            captured, "Weather and AAPL?", model="openai_tool_calls.sse", tools=[WEATHER, STOCK]
        )
    finally:
        await captured.aclose()

    assert error is None
    assert text_of(events) == ""
    assert [(c.index, c.id, c.name, dict(c.arguments)) for c in calls_of(events)] == [
        (
            0,
            "call_lQnnsesjFMWMQ5IeWPHzR4th",
            "GetWeatherArgs",
            {"city": "Edinburgh", "country": "UK", "units": "c"},
        ),
        (
            1,
            "call_2xjOUgaCdiwAcl9ZBL9LyMUU",
            "get_stock_price",
            {"ticker": "AAPL", "exchange": "NASDAQ"},
        ),
    ]
    firsts = [d for d in deltas_of(events) if d.id is not None]
    assert [(d.index, d.name, d.arguments) for d in firsts] == [
        (0, "GetWeatherArgs", ""),
        (1, "get_stock_price", ""),
    ]
    assert "".join(d.arguments for d in deltas_of(events) if d.index == 0) == (
        '{"city": "Edinburgh", "country": "UK", "units": "c"}'
    )
    # The first call is complete when the second starts, before the stream ends.
    assert events.index(calls_of(events)[0]) < events.index(firsts[1]) + 1
    done = done_of(events)
    assert done.finish_reason is FinishReason.TOOL_CALLS
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (149, 60)


def shape(value: Any) -> Any:
    """Keys as sent and the JSON type of every value."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def choice_kinds(chunks: list[ChatCompletionChunk]) -> list[Any]:
    """The shape of each chunk's ``choices`` (the envelope around it changed since the
    capture: ``service_tier``, ``usage: null``, ``obfuscation``), repeats collapsed."""
    out: list[Any] = []
    for chunk in chunks:
        s = shape(chunk.model_dump(exclude_unset=True)["choices"])
        if not out or out[-1] != s:
            out.append(s)
    return out


async def sdk_chunks(base_url: str, model: str, **params: Any) -> list[ChatCompletionChunk]:
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key=EMULATOR_KEY, max_retries=0)
    try:
        stream = await sdk.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Weather in Edinburgh and AAPL?"}],
            stream=True,
            stream_options={"include_usage": True},
            **params,
        )
        return [chunk async for chunk in stream]
    finally:
        await sdk.close()


async def test_emulated_tool_call_stream_has_the_capture_shape(
    emulator: Emulator, capture_server: str
) -> None:
    real = await sdk_chunks(capture_server, "openai_tool_calls.sse")
    emulated = await sdk_chunks(
        emulator.base_url("openai"),
        with_knobs("gpt-4o-2024-08-06", tool_calls=2),
        tools=[
            {"type": "function", "function": {"name": t.name, "parameters": dict(t.parameters)}}
            for t in (WEATHER, STOCK)
        ],
    )

    assert choice_kinds(emulated) == choice_kinds(real)
    for chunks in (real, emulated):
        role = chunks[0].choices[0].delta
        assert role.model_dump(exclude_unset=True) == {"role": "assistant", "content": None}
        starts = [
            tc
            for c in chunks
            if c.choices and c.choices[0].delta.tool_calls
            for tc in c.choices[0].delta.tool_calls or ()
            if tc.id is not None
        ]
        assert [tc.index for tc in starts] == [0, 1]
        assert all(CALL_ID.match(tc.id or "") for tc in starts)
        assert all(tc.function and tc.function.arguments == "" for tc in starts)
        assert chunks[-2].choices[0].finish_reason == "tool_calls"
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
    names = [
        tc.function.name
        for c in emulated
        if c.choices
        for tc in c.choices[0].delta.tool_calls or ()
        if tc.function and tc.function.name
    ]
    assert names == ["get_weather", "get_stock_price"]


# -- 3. two rounds ------------------------------------------------------------------------------


async def test_two_round_exchange_ends_with_the_answer_and_the_right_messages(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    first = await provider.complete("Weather in Oslo?", model="gpt-4o", tools=[WEATHER])
    (call,) = first.tool_calls

    second = await provider.complete(
        model="gpt-4o",
        tools=[WEATHER],
        messages=[
            Message("user", "Weather in Oslo?"),
            Message("assistant", "", tool_calls=(call,)),
            Message.tool_result(call.id, "12°C, light rain", name="get_weather"),
        ],
    )

    assert second.finish_reason is FinishReason.STOP
    assert second.text == "The tools said: 12°C, light rain."
    assert second.tool_calls == ()
    assert emulator.requests[-1].body["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.arguments_json()},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "12°C, light rain"},
    ]


async def test_assistant_text_with_calls_and_a_failed_tool(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    one = ToolCall("call_a", "get_weather", {"city": "Oslo", "units": "c"})
    two = ToolCall("call_b", "get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"})

    result = await provider.complete(
        model="gpt-4o",
        tools=[WEATHER, STOCK],
        messages=[
            Message("user", "Weather and AAPL?"),
            Message("assistant", "Checking both.", tool_calls=(one, two)),
            Message.tool_result("call_a", "12°C"),
            Message.tool_result("call_b", "market closed", is_error=True),
        ],
    )

    assert result.text == "The tools said: 12°C; Error: market closed."
    sent = emulator.requests[-1].body["messages"]
    assert sent[1]["content"] == "Checking both."
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_a", "call_b"]
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": "12°C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "Error: market closed"},
    ]


async def test_an_unanswered_call_is_the_real_400(provider: OpenAIProvider) -> None:
    call = ToolCall("call_a", "get_weather", {"city": "Oslo"})
    with pytest.raises(errors.InvalidRequestError, match="did not have response messages"):
        await provider.complete(
            model="gpt-4o",
            tools=[WEATHER],
            messages=[
                Message("user", "Weather?"),
                Message("assistant", "", tool_calls=(call,)),
                Message("user", "Well?"),
            ],
        )


# -- 4. parallel calls --------------------------------------------------------------------------


async def test_parallel_calls_keep_distinct_ids_and_indexes(provider: OpenAIProvider) -> None:
    events, error = await run(
        provider, "Both?", model=with_knobs("gpt-4o", tool_calls=2), tools=[WEATHER, STOCK]
    )

    assert error is None
    made = calls_of(events)
    assert [(c.index, c.name) for c in made] == [(0, "get_weather"), (1, "get_stock_price")]
    assert len({c.id for c in made}) == 2
    for call in made:
        own = [d for d in deltas_of(events) if d.index == call.index]
        assert own[0].id == call.id
        assert json.loads("".join(d.arguments for d in own)) == call.arguments


# -- 5. tool_choice and parallel_tool_calls on the wire ----------------------------------------


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("required", "required"),
        ("none", "none"),
        ("auto", "auto"),
        ("get_stock_price", {"type": "function", "function": {"name": "get_stock_price"}}),
    ],
)
async def test_tool_choice_reaches_the_wire(
    provider: OpenAIProvider, emulator: Emulator, choice: str, wire: object
) -> None:
    events, error = await run(
        provider, "Go", model="gpt-4o", tools=[WEATHER, STOCK], tool_choice=choice
    )

    assert error is None
    assert emulator.requests[-1].body["tool_choice"] == wire
    made = [c.name for c in calls_of(events)]
    if choice == "none":
        assert made == []
        assert text_of(events)
        assert done_of(events).finish_reason is FinishReason.STOP
    elif choice == "get_stock_price":
        assert made == ["get_stock_price"]
    else:
        assert made == ["get_weather"]


async def test_parallel_tool_calls_false_reaches_the_wire_and_limits_the_calls(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    events, error = await run(
        provider,
        "Both?",
        model=with_knobs("gpt-4o", tool_calls=2),
        tools=[WEATHER, STOCK],
        parallel_tool_calls=False,
    )

    assert error is None
    assert emulator.requests[-1].body["parallel_tool_calls"] is False
    assert len(calls_of(events)) == 1


async def test_no_tool_fields_without_tools(provider: OpenAIProvider, emulator: Emulator) -> None:
    # The API answers 400 to tool_choice / parallel_tool_calls without tools.
    events, error = await run(provider, "Hi", model="gpt-4o", tool_choice="none")

    assert error is None
    assert text_of(events)
    body = emulator.requests[-1].body
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)


# -- 6. structured output -----------------------------------------------------------------------


async def test_structured_output_streams_partial_objects_and_a_validated_instance(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    events, error = await run(provider, "Invent a person", model="gpt-4o", response_format=Person)

    assert error is None
    partials = [e.value for e in events if isinstance(e, PartialObjectEvent)]
    assert len(partials) > 2
    assert partials[0] != partials[-1]
    (obj,) = [e for e in events if isinstance(e, ObjectEvent)]
    assert isinstance(obj.value, Person)
    assert obj.value == Person.model_validate_json(text_of(events))
    assert partials[-1] == json.loads(text_of(events))
    assert isinstance(events[-2], ObjectEvent)
    assert isinstance(events[-1], DoneEvent)
    body = emulator.requests[-1].body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Person",
            "schema": dict(ResponseFormat.of(Person).schema),
            "strict": False,
        },
    }
    assert set(body["response_format"]["json_schema"]["schema"]["properties"]) == {
        "name",
        "age",
        "languages",
    }

    result = await provider.complete("Invent a person", model="gpt-4o", response_format=Person)
    assert result.object == obj.value


async def test_a_reply_that_does_not_fit_raises_with_the_raw_text_after_the_tokens(
    provider: OpenAIProvider,
) -> None:
    reply = '{"name": "Ada", "age": "old"}'
    events, error = await run(
        provider, "Invent a person", model=with_knobs("gpt-4o", reply=reply), response_format=Person
    )

    assert isinstance(error, errors.StructuredOutputError)
    assert error.raw_text == reply
    assert text_of(events) == reply
    assert not any(isinstance(e, ObjectEvent) for e in events)


async def test_strict_schema_the_api_refuses_is_the_real_400(provider: OpenAIProvider) -> None:
    strict = {
        "type": "json_schema",
        "json_schema": {"name": "Person", "schema": Person.model_json_schema(), "strict": True},
    }
    with pytest.raises(errors.InvalidRequestError, match="additionalProperties"):
        await provider.complete("Hi", model="gpt-4o", options={"response_format": strict})


# -- 7. content parts ---------------------------------------------------------------------------


async def test_image_and_pdf_parts_reach_the_wire_in_the_chat_completions_shape(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    content = (
        TextPart("What is in these?"),
        ImagePart(data=PNG),
        ImagePart(url="https://example.com/cat.jpg"),
        DocumentPart(data=PDF),
    )

    events, error = await run(
        provider, StreamRequest(model="gpt-4o", messages=(Message("user", content),))
    )

    assert error is None
    assert text_of(events)
    (message,) = emulator.requests[-1].body["messages"]
    assert message == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": ImagePart(data=PNG).data_url()}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {
                "type": "file",
                "file": {
                    "filename": "document-4.pdf",
                    "file_data": DocumentPart(data=PDF).data_url(),
                },
            },
        ],
    }
    assert message["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_document_url_is_refused_before_any_request(
    provider: OpenAIProvider, emulator: Emulator
) -> None:
    before = len(emulator.requests)
    content = (TextPart("Summarise"), DocumentPart(url="https://example.com/paper.pdf"))

    with pytest.raises(errors.UnsupportedContentError, match="document"):
        await provider.complete(model="gpt-4o", messages=[Message("user", content)])

    assert len(emulator.requests) == before


async def test_a_malformed_image_part_is_the_real_400(emulator: Emulator) -> None:
    sdk = openai.AsyncOpenAI(
        base_url=emulator.base_url("openai"), api_key=EMULATOR_KEY, max_retries=0
    )
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(
                model="gpt-4o",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:text/plain;base64,aGk="},
                            }
                        ],
                    }
                ],
            )
    finally:
        await sdk.close()
    assert caught.value.code == "invalid_image_format"


# -- 8. faults inside a call --------------------------------------------------------------------


async def test_drop_inside_the_arguments_interrupts_without_a_call(
    provider: OpenAIProvider,
) -> None:
    events, error = await run(
        provider, "Weather?", model=with_knobs("gpt-4o", fault="drop", after=2), tools=[WEATHER]
    )

    assert isinstance(error, errors.StreamInterruptedError)
    assert len([d for d in deltas_of(events) if d.arguments]) == 2
    assert calls_of(events) == []
    assert not any(isinstance(e, DoneEvent) for e in events)


async def test_arguments_that_are_not_json_raise_naming_the_tool(provider: OpenAIProvider) -> None:
    events, error = await run(
        provider, "Weather?", model=with_knobs("gpt-4o", args='{"city": Oslo'), tools=[WEATHER]
    )

    assert isinstance(error, errors.ToolArgumentsError)
    assert error.tool_name == "get_weather"
    assert "get_weather" in str(error)
    assert "".join(d.arguments for d in deltas_of(events)) == '{"city": Oslo'


async def test_max_tokens_inside_the_arguments_finishes_length_without_the_call(
    provider: OpenAIProvider,
) -> None:
    events, error = await run(provider, "Weather?", model="gpt-4o", tools=[WEATHER], max_tokens=3)

    assert error is None
    assert calls_of(events) == []
    done = done_of(events)
    assert done.finish_reason is FinishReason.LENGTH
    (cut,) = done.details["incomplete_tool_calls"]
    assert cut["name"] == "get_weather"
    assert cut["arguments"] == "".join(d.arguments for d in deltas_of(events))


# -- compatible servers -------------------------------------------------------------------------


_COMPATIBLE = b"".join(
    b"data: " + line + b"\n\n"
    for line in (
        # A whole call in one fragment, without an index, the id repeated on a second
        # call's fragments, arguments sent with text: shapes OpenAI-compatible servers use.
        b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"llama3",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"On it."},'
        b'"finish_reason":null}]}',
        b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"llama3",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":'
        b'"call_x","type":"function","function":{"name":"get_weather","arguments":'
        b'"{\\"city\\":\\"Oslo\\",\\"units\\":\\"c\\"}"}}]},"finish_reason":null}]}',
        b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"llama3",'
        b'"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_y","type":'
        b'"function","function":{"name":"get_stock_price","arguments":"{\\"ticker\\":"}}]},'
        b'"finish_reason":null}]}',
        b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"llama3",'
        b'"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_y","function":'
        b'{"arguments":"\\"AAPL\\",\\"exchange\\":\\"X\\"}"}}]},"finish_reason":null}]}',
        b'{"id":"1","object":"chat.completion.chunk","created":1,"model":"llama3",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}',
        b"[DONE]",
    )
)


async def test_compatible_server_call_shapes_are_read_the_same_way() -> None:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=_COMPATIBLE, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    p = OpenAIProvider(api_key="sk-x", base_url=f"http://127.0.0.1:{port}/v1")
    try:
        events, error = await run(p, "Both?", model="llama3", tools=[WEATHER, STOCK])
    finally:
        await p.aclose()
        await runner.cleanup()

    assert error is None
    assert text_of(events) == "On it."
    assert [(c.index, c.id, c.name, dict(c.arguments)) for c in calls_of(events)] == [
        (0, "call_x", "get_weather", {"city": "Oslo", "units": "c"}),
        (1, "call_y", "get_stock_price", {"ticker": "AAPL", "exchange": "X"}),
    ]
    assert done_of(events).finish_reason is FinishReason.TOOL_CALLS


async def test_non_streaming_reply_carries_the_calls(emulator: Emulator) -> None:
    sdk = openai.AsyncOpenAI(
        base_url=emulator.base_url("openai"), api_key=EMULATOR_KEY, max_retries=0
    )
    try:
        completion = await sdk.chat.completions.create(
            model=with_knobs("gpt-4o", tool_calls=2),
            messages=[{"role": "user", "content": "Both?"}],
            tools=[
                {"type": "function", "function": {"name": t.name, "parameters": dict(t.parameters)}}
                for t in (WEATHER, STOCK)
            ],
        )
    finally:
        await sdk.close()

    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    made = choice.message.tool_calls or []
    assert [c.function.name for c in made if c.type == "function"] == [
        "get_weather",
        "get_stock_price",
    ]
    assert all(CALL_ID.match(c.id) for c in made)
    assert all(json.loads(c.function.arguments) for c in made if c.type == "function")

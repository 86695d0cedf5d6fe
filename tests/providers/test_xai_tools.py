"""Tool calls, structured output and images on ``GrokProvider``: the official xai-sdk over
gRPC, against the emulator and the real captures served verbatim."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pydantic
import pytest
import pytest_asyncio
from xai_sdk import AsyncClient
from xai_sdk.chat import image, tool, user
from xai_sdk.tools import web_search

from rxllm import errors
from rxllm.content import DocumentPart, ImagePart, TextPart
from rxllm.emulator import Emulator, with_knobs
from rxllm.emulator._content import tokenize
from rxllm.events import (
    FinishReason,
    ObjectEvent,
    PartialObjectEvent,
    StreamEvent,
)
from rxllm.providers.grok import GrokProvider
from rxllm.request import Message, StreamRequest
from rxllm.testing import EMULATOR_KEY
from rxllm.tools import Tool
from tests.fixtures.xai.replay import ReplayServer, chunks
from tests.providers.support import calls_of, deltas_of, done_of, run, text_of

WEATHER = Tool(
    "get_weather",
    "The current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
LOCATION = Tool(
    "get_location",
    "Where a place is.",
    {"type": "object", "properties": {"loc_name": {"type": "string"}}, "required": ["loc_name"]},
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
XAI_CALL_ID = re.compile(r"^call_\d{8}$")


class City(pydantic.BaseModel):
    name: str
    population: int


@pytest_asyncio.fixture
async def provider(emulator: Emulator) -> AsyncIterator[GrokProvider]:
    p = GrokProvider(api_key=EMULATOR_KEY, base_url=emulator.xai_address)
    yield p
    await p.aclose()


# 1. a streamed call -------------------------------------------------------------------------


async def test_a_streamed_call_arrives_whole_with_its_id_name_and_parsed_arguments(
    provider: GrokProvider, emulator: Emulator
) -> None:
    events, error = await run(provider, "Weather in Oslo?", model="grok-4", tools=(WEATHER,))
    assert error is None

    deltas = deltas_of(events)
    (call,) = calls_of(events)
    assert [d.index for d in deltas] == [0]
    assert json.loads("".join(d.arguments for d in deltas)) == call.arguments
    assert isinstance(call.arguments["city"], str)
    assert call.name == deltas[0].name == "get_weather"
    assert call.id == deltas[0].id
    assert XAI_CALL_ID.match(call.id)
    assert not call.server_side
    assert events.index(call) < len(events) - 1  # before done
    done = done_of(events)
    assert done.finish_reason is FinishReason.TOOL_CALLS
    assert done.details["finish_reason"] == "REASON_TOOL_CALLS"

    result = await provider.complete("Weather in Oslo?", model="grok-4", tools=(WEATHER,))
    assert [(c.id, c.name, dict(c.arguments)) for c in result.tool_calls] == [
        (call.id, call.name, dict(call.arguments))
    ]
    # offered as the SDK's tool(): the schema as JSON text
    (offered,) = emulator.requests[-1].body["tools"]
    assert offered["function"]["name"] == "get_weather"
    assert json.loads(offered["function"]["parameters"]) == dict(WEATHER.parameters)


# 2. the real captures, and the emulator against them ----------------------------------------


async def replayed(case: str, **fields: Any) -> tuple[list[StreamEvent], Exception | None]:
    async with ReplayServer(case) as replay:
        p = GrokProvider(api_key="xai-test-key", base_url=replay.address)
        try:
            return await run(p, "Where is London?", **fields)
        finally:
            await p.aclose()


async def test_capture_of_two_client_side_calls_gives_both_tool_call_events() -> None:
    events, error = await replayed(
        "xai_tool_call", model="grok-4-fast-reasoning", tools=(LOCATION,)
    )
    assert error is None
    assert [(c.index, c.id, c.name, dict(c.arguments)) for c in calls_of(events)] == [
        (0, "call_56494531", "get_location", {"loc_name": "Lodon"}),
        (1, "call_28585237", "get_location", {"loc_name": "London"}),
    ]
    assert [d.arguments for d in deltas_of(events)] == [
        '{"loc_name":"Lodon"}',
        '{"loc_name":"London"}',
    ]
    done = done_of(events)
    assert done.finish_reason is FinishReason.TOOL_CALLS
    assert done.usage.prompt_tokens == 351
    assert done.usage.completion_tokens == 53 + 223


async def test_capture_of_a_server_side_web_search_is_reported_not_run() -> None:
    events, error = await replayed("xai_server_tools", model="grok-4-fast-non-reasoning")
    assert error is None
    (call,) = calls_of(events)
    assert call.server_side
    assert (call.id, call.name) == ("call_41803280", "web_search_with_snippets")
    assert call.arguments == {
        "query": "current weather in San Francisco in Celsius",
        "num_results": 5,
    }
    assert not deltas_of(events)  # nothing for rxllm to complete or run
    assert text_of(events).startswith("The current weather in San Francisco is clear")
    # the web_search output's REASON_TOOL_CALLS is not the reply's end: the answer's is
    assert done_of(events).finish_reason is FinishReason.STOP


def call_shape(chunk: Any) -> tuple[Any, ...]:
    output = chunk.outputs[0]
    delta = output.delta
    return (
        tuple(f.name for f, _ in chunk.ListFields() if f.name != "usage"),
        tuple(f.name for f, _ in delta.ListFields()),
        tuple(tuple(f.name for f, _ in call.ListFields()) for call in delta.tool_calls),
        tuple((call.type, call.status) for call in delta.tool_calls),
        tuple(tuple(f.name for f, _ in call.function.ListFields()) for call in delta.tool_calls),
        output.finish_reason,
    )


async def stream_chunks(client: AsyncClient, **create: Any) -> list[Any]:
    seen = []
    async for _, chunk in client.chat.create(**create).stream():
        seen.append(chunk.proto)
    return seen


async def test_the_emulators_calls_have_the_captures_shape(emulator: Emulator) -> None:
    captured = chunks("xai_tool_call")
    offer = [tool(LOCATION.name, LOCATION.description, dict(LOCATION.parameters))]
    client = AsyncClient(
        api_key=EMULATOR_KEY, api_host=emulator.xai_address, use_insecure_channel=True
    )
    try:
        emulated = await stream_chunks(
            client,
            model=with_knobs("grok-4-fast-reasoning", tool_calls=2),
            messages=[user("Where is London?")],
            tools=offer,
        )
    finally:
        await client.close()
    assert [call_shape(c) for c in emulated] == [call_shape(c) for c in captured]
    for seen in (captured, emulated):
        ids = [call.id for call in seen[0].outputs[0].delta.tool_calls]
        assert all(XAI_CALL_ID.match(i) for i in ids)
        assert len(set(ids)) == 2
        assert seen[0].usage.completion_tokens == seen[-1].usage.completion_tokens > 0


# 3. two rounds ------------------------------------------------------------------------------


async def test_two_rounds_end_with_the_answer_and_the_wire_carries_call_and_result(
    provider: GrokProvider, emulator: Emulator
) -> None:
    first = await provider.complete("Weather in Oslo?", model="grok-4", tools=(WEATHER,))
    (call,) = first.tool_calls
    history = (
        Message("user", "Weather in Oslo?"),
        Message("assistant", "", tool_calls=(call,)),
        Message.tool_result(call.id, "12°C, light rain", name="get_weather"),
    )
    second = await provider.complete(messages=history, model="grok-4", tools=(WEATHER,))
    assert second.text == "The tools said: 12°C, light rain."
    assert second.finish_reason is FinishReason.STOP
    assert not second.tool_calls

    messages = emulator.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["ROLE_USER", "ROLE_ASSISTANT", "ROLE_TOOL"]
    assert messages[1]["tool_calls"] == [
        {
            "id": call.id,
            "type": "TOOL_CALL_TYPE_CLIENT_SIDE_TOOL",
            "status": "TOOL_CALL_STATUS_COMPLETED",
            "function": {"name": "get_weather", "arguments": call.arguments_json()},
        }
    ]
    assert messages[2] == {
        "role": "ROLE_TOOL",
        "content": [{"text": "12°C, light rain"}],
        "tool_call_id": call.id,
    }


# 4. parallel calls --------------------------------------------------------------------------


async def test_parallel_calls_keep_distinct_ids_and_indexes(provider: GrokProvider) -> None:
    model = with_knobs("grok-4", tool_calls=2)
    events, error = await run(
        provider, "Weather and place?", model=model, tools=(WEATHER, LOCATION)
    )
    assert error is None
    calls = calls_of(events)
    assert [c.index for c in calls] == [0, 1]
    assert [c.name for c in calls] == ["get_weather", "get_location"]
    assert len({c.id for c in calls}) == 2
    assert [d.index for d in deltas_of(events)] == [0, 1]


# 5. tool_choice and parallel_tool_calls on the wire ----------------------------------------


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("required", {"mode": "TOOL_MODE_REQUIRED"}),
        ("none", {"mode": "TOOL_MODE_NONE"}),
        ("auto", {"mode": "TOOL_MODE_AUTO"}),
        ("get_location", {"function_name": "get_location"}),
    ],
)
async def test_tool_choice_reaches_the_wire(
    provider: GrokProvider, emulator: Emulator, choice: str, wire: dict[str, str]
) -> None:
    events, error = await run(
        provider,
        "Weather?",
        model=with_knobs("grok-4", tool_rounds=0),
        tools=(WEATHER, LOCATION),
        tool_choice=choice,
        parallel_tool_calls=False,
    )
    assert error is None
    body = emulator.requests[-1].body
    assert body["tool_choice"] == wire
    assert body["parallel_tool_calls"] is False
    names = [c.name for c in calls_of(events)]
    # tool_rounds=0 answers at once unless a call is forced
    assert names == {"required": ["get_weather"], "get_location": ["get_location"]}.get(choice, [])


async def test_no_tool_fields_without_tools(provider: GrokProvider, emulator: Emulator) -> None:
    await run(provider, "Hi", model="grok-4")
    body = emulator.requests[-1].body
    assert not {"tools", "tool_choice", "parallel_tool_calls", "response_format"} & set(body)


# 6. structured output -----------------------------------------------------------------------


async def test_structured_output_streams_partial_objects_and_a_validated_instance(
    provider: GrokProvider, emulator: Emulator
) -> None:
    events, error = await run(provider, "A city, as JSON", model="grok-4", response_format=City)
    assert error is None
    partials = [e.value for e in events if isinstance(e, PartialObjectEvent)]
    assert len(partials) > 1
    assert len(json.dumps(partials[-1])) > len(json.dumps(partials[0]))
    (obj,) = [e for e in events if isinstance(e, ObjectEvent)]
    assert isinstance(obj.value, City)
    assert City.model_validate_json(text_of(events)) == obj.value

    fmt = emulator.requests[-1].body["response_format"]
    assert fmt["format_type"] == "FORMAT_TYPE_JSON_SCHEMA"
    assert json.loads(fmt["schema"])["required"] == ["name", "population"]

    result = await provider.complete("A city, as JSON", model="grok-4", response_format=City)
    assert result.object == obj.value


async def test_a_reply_that_does_not_fit_raises_after_its_tokens(provider: GrokProvider) -> None:
    bad = '{"name": "Oslo"}'
    events, error = await run(
        provider, "A city", model=with_knobs("grok-4", reply=bad), response_format=City
    )
    assert isinstance(error, errors.StructuredOutputError)
    assert error.raw_text == bad
    assert text_of(events) == bad


# 7. content parts ---------------------------------------------------------------------------


async def test_an_image_reaches_the_api_as_an_image_url_content(
    provider: GrokProvider, emulator: Emulator
) -> None:
    message = Message(
        "user",
        (
            TextPart("What is this?"),
            ImagePart(data=PNG),
            ImagePart(url="https://example.com/cat.jpg"),
        ),
    )
    _events, error = await run(provider, StreamRequest(model="grok-4", messages=(message,)))
    assert error is None
    content = emulator.requests[-1].body["messages"][0]["content"]
    assert content[0] == {"text": "What is this?"}
    assert content[1]["image_url"]["image_url"] == ImagePart(data=PNG).data_url()
    assert content[1]["image_url"]["detail"] == "DETAIL_AUTO"
    assert content[2]["image_url"]["image_url"] == "https://example.com/cat.jpg"


@pytest.mark.parametrize(
    "part",
    [
        DocumentPart(data=b"%PDF-1.4 tiny"),
        DocumentPart(url="https://example.com/a.pdf"),
        ImagePart(data=b"GIF89a" + b"\x00" * 8),  # api.x.ai decodes PNG and JPEG only
    ],
)
async def test_an_unsupported_part_fails_before_any_request(
    provider: GrokProvider, emulator: Emulator, part: Any
) -> None:
    before = len(emulator.requests)
    message = Message("user", (TextPart("Read this"), part))
    _, error = await run(provider, StreamRequest(model="grok-4", messages=(message,)))
    assert isinstance(error, errors.UnsupportedContentError)
    assert "grok" in str(error)
    assert len(emulator.requests) == before


async def test_a_malformed_image_is_the_apis_invalid_argument(emulator: Emulator) -> None:
    client = AsyncClient(
        api_key=EMULATOR_KEY, api_host=emulator.xai_address, use_insecure_channel=True
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stream_chunks(
                client, model="grok-4", messages=[user("Look", image("data:image/png;base64,%%"))]
            )
    finally:
        await client.close()
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "image_url" in (raised.value.details() or "")


# 8. faults inside calls and bad arguments ---------------------------------------------------


async def test_a_drop_inside_the_second_call_keeps_the_first_and_loses_the_second(
    provider: GrokProvider,
) -> None:
    args = '{"city": "Oslo"}'
    model = with_knobs(
        "grok-4", tool_calls=2, args=args, fault="drop", after=len(tokenize(args)) + 1
    )
    events, error = await run(provider, "Weather twice?", model=model, tools=(WEATHER,))
    assert isinstance(error, errors.StreamInterruptedError)
    assert [c.index for c in calls_of(events)] == [0]  # none for the cut call
    assert [d.index for d in deltas_of(events)] == [0]


async def test_a_drop_inside_the_only_call_gives_no_tool_call(provider: GrokProvider) -> None:
    model = with_knobs("grok-4", fault="drop", after=2, args='{"city": "Oslo, Norway"}')
    events, error = await run(provider, "Weather?", model=model, tools=(WEATHER,))
    assert isinstance(error, errors.StreamInterruptedError)
    assert not calls_of(events)


async def test_max_tokens_inside_the_arguments_leaves_the_call_incomplete(
    provider: GrokProvider,
) -> None:
    model = with_knobs("grok-4", args='{"city": "Oslo, Norway"}')
    events, error = await run(provider, "Weather?", model=model, tools=(WEATHER,), max_tokens=3)
    assert error is None
    assert not calls_of(events)
    done = done_of(events)
    assert done.finish_reason is FinishReason.LENGTH
    (cut,) = done.details["incomplete_tool_calls"]
    assert cut["name"] == "get_weather"
    assert '{"city": "Oslo, Norway"}'.startswith(cut["arguments"])


async def test_arguments_that_are_not_json_name_the_tool(provider: GrokProvider) -> None:
    model = with_knobs("grok-4", args="{city: Oslo")
    events, error = await run(provider, "Weather?", model=model, tools=(WEATHER,))
    assert isinstance(error, errors.ToolArgumentsError)
    assert error.tool_name == "get_weather"
    assert "get_weather" in str(error)
    assert not calls_of(events)


async def test_server_side_tools_are_offered_through_options(
    provider: GrokProvider, emulator: Emulator
) -> None:
    await run(
        provider, "News?", model="grok-4", tools=(WEATHER,), options={"tools": [web_search()]}
    )
    tools = emulator.requests[-1].body["tools"]
    assert [next(iter(t)) for t in tools] == ["function", "web_search"]

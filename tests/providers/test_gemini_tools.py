"""Gemini tool calls, structured output and content parts: google-genai, the emulator, a capture."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import pytest_asyncio
from google import genai
from google.genai import types

from rxllm import errors
from rxllm.content import DocumentPart, ImagePart, TextPart
from rxllm.emulator import Emulator, with_knobs
from rxllm.events import (
    DoneEvent,
    FinishReason,
    ObjectEvent,
    PartialObjectEvent,
)
from rxllm.providers.gemini import GeminiProvider
from rxllm.request import Message, StreamRequest
from rxllm.structured import ResponseFormat
from rxllm.testing import EMULATOR_KEY
from rxllm.tools import Tool, ToolCall

from .support import calls_of, deltas_of, done_of, gemini_sse, run, serve, sse_replay, text_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
MODEL = "gemini-2.5-flash"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PDF = b"%PDF-1.4\n%rxllm\n"

WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = Tool(
    "get_time",
    "The time in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


class City(pydantic.BaseModel):
    name: str
    population: int
    tags: list[str]


@pytest.fixture(params=[True, False], ids=["raw", "sdk-parsed"])
def raw_stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest_asyncio.fixture
async def gemini(emulator: Emulator, raw_stream: bool) -> AsyncIterator[GeminiProvider]:
    provider = GeminiProvider(
        api_key=EMULATOR_KEY, base_url=emulator.base_url("gemini"), raw_stream=raw_stream
    )
    yield provider
    await provider.aclose()


def _knobs(**knobs: object) -> dict[str, Any]:
    """Knobs in the ``x-rxllm-emulator`` header (quoted values do not fit in a URL path)."""
    header = with_knobs("m", **knobs).partition("~")[2]
    return {"options": {"http_options": {"headers": {"x-rxllm-emulator": header}}}}


# -- 1. a streamed call -------------------------------------------------------------------


async def test_a_call_streams_its_arguments_and_ends_with_tool_calls(
    gemini: GeminiProvider,
) -> None:
    events, error = await run(gemini, "Weather in Oslo?", model=MODEL, tools=[WEATHER])
    assert error is None
    (call,) = calls_of(events)
    deltas = [d for d in deltas_of(events) if d.index == 0]
    assert json.loads("".join(d.arguments for d in deltas)) == call.arguments
    assert deltas[0].id == call.id
    assert deltas[0].name == "get_weather"
    assert call.name == "get_weather"
    assert isinstance(call.arguments["city"], str)
    assert call.id.startswith("rxllm_")  # the API sends no id: rxllm's own, stable per reply
    assert events.index(call) < len(events) - 1
    done = done_of(events)
    assert done.finish_reason is FinishReason.TOOL_CALLS
    assert done.details["finish_reason"] == "STOP"  # what Gemini says for a call
    result = await gemini.complete("Weather in Oslo?", model=MODEL, tools=[WEATHER])
    assert [(c.name, dict(c.arguments)) for c in result.tool_calls] == [
        ("get_weather", dict(call.arguments))
    ]


# -- 2. the real capture ------------------------------------------------------------------


def _capture(name: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (FIXTURES / name).read_text("utf-8").splitlines()]
    return [row["data"] for row in rows if row["kind"] == "event"]


@pytest_asyncio.fixture
async def capture_url() -> AsyncIterator[str]:
    """Serves the tool-call capture verbatim (``data: <json>\\r\\n\\r\\n``, EOF)."""

    data = gemini_sse(_capture("gemini_tool_call.jsonl"))
    runner, url = await serve("/v1beta/models/{spec}", sse_replay(data))
    yield url
    await runner.cleanup()


SUM = Tool(
    "sum",
    "Adds two numbers.",
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
)


async def test_the_real_capture_gives_its_three_calls(capture_url: str, raw_stream: bool) -> None:
    provider = GeminiProvider(api_key="k", base_url=capture_url, raw_stream=raw_stream)
    try:
        events, error = await run(provider, "Sum 2+3, 4+5, 6+7", model=MODEL, tools=[SUM])
    finally:
        await provider.aclose()
    assert error is None
    calls = calls_of(events)
    assert [(c.index, c.name, dict(c.arguments)) for c in calls] == [
        (0, "sum", {"a": 2, "b": 3}),
        (1, "sum", {"a": 4, "b": 5}),
        (2, "sum", {"a": 6, "b": 7}),
    ]
    assert [c.id for c in calls] == [f"rxllm_ZiS5ae3fFoSAkdUPnfrxqQU_{i}" for i in range(3)]
    assert [d.arguments for d in deltas_of(events)] == [
        '{"a":2,"b":3}',
        '{"a":4,"b":5}',
        '{"a":6,"b":7}',
    ]
    done = done_of(events)
    assert done.finish_reason is FinishReason.TOOL_CALLS
    if raw_stream:  # google-genai 3.6.1 drops finishMessage when it parses a chunk
        assert done.details["finish_message"] == "Model generated function call(s)."
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (171, 54 + 77)


def _sdk(base_url: str) -> genai.Client:
    import aiohttp

    options = types.HttpOptions(
        base_url=base_url,
        api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1),
        aiohttp_client=aiohttp.ClientSession(),
    )
    return genai.Client(api_key=EMULATOR_KEY, vertexai=False, http_options=options)


async def _sdk_chunks(base_url: str, model: str, config: types.GenerateContentConfig) -> list[Any]:
    client = _sdk(base_url)
    try:
        stream = await client.aio.models.generate_content_stream(
            model=model, contents="Sum 2+3, 4+5, 6+7", config=config
        )
        return [chunk async for chunk in stream]
    finally:
        await client.aio.aclose()
        session = client._api_client._http_options.aiohttp_client
        assert session is not None
        await session.close()


def _call_shape(chunks: list[Any]) -> list[tuple[Any, ...]]:
    out = []
    for chunk in chunks:
        (candidate,) = chunk.candidates
        parts = candidate.content.parts or []
        out.append(
            (
                candidate.content.role,
                candidate.index,
                candidate.finish_reason,
                candidate.finish_message,
                tuple(
                    (
                        p.function_call is not None,
                        p.function_call is not None and p.function_call.id is None,
                        p.function_call is not None and isinstance(p.function_call.args, dict),
                        p.thought_signature is not None,
                    )
                    for p in parts
                ),
                tuple(
                    sorted(
                        k
                        for k, v in chunk.usage_metadata.model_dump().items()
                        if v is not None and k != "thoughts_token_count"
                    )
                ),
                chunk.model_version is not None,
                chunk.response_id is not None,
            )
        )
    return out


async def test_the_emulators_calls_match_the_capture_field_by_field(
    capture_url: str, emulator: Emulator
) -> None:
    declarations = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="sum", description="Adds", parameters_json_schema=dict(SUM.parameters)
            )
        ]
    )
    config = types.GenerateContentConfig(
        tools=[declarations],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    real = await _sdk_chunks(capture_url, MODEL, config)
    ours = await _sdk_chunks(emulator.base_url("gemini"), with_knobs(MODEL, tool_calls=3), config)
    assert _call_shape(ours) == _call_shape(real)
    names = [[p.function_call.name for p in c.candidates[0].content.parts] for c in ours]
    assert names == [["sum", "sum", "sum"]]


# -- 3. two rounds ------------------------------------------------------------------------


async def test_two_rounds_end_with_the_answer_and_the_wire_has_geminis_shapes(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    first = await gemini.complete("Weather in Oslo?", model=MODEL, tools=[WEATHER])
    (call,) = first.tool_calls
    history = (
        Message("user", "Weather in Oslo?"),
        Message("assistant", "", tool_calls=(call,)),
        Message.tool_result(call.id, "12°C, light rain"),  # the name comes from the call
    )
    second = await gemini.complete(StreamRequest(model=MODEL, messages=history, tools=(WEATHER,)))
    assert second.text == "The tools said: 12°C, light rain."
    assert second.finish_reason is FinishReason.STOP
    contents = emulator.requests[-1].body["contents"]
    assert contents[1] == {
        "parts": [
            {
                "functionCall": {"args": dict(call.arguments), "name": "get_weather"},
                # the capture's signature comes back on the call that carried it
                "thoughtSignature": contents[1]["parts"][0]["thoughtSignature"],
            }
        ],
        "role": "model",
    }
    assert contents[1]["parts"][0]["thoughtSignature"]
    assert contents[2] == {
        "parts": [
            {
                "functionResponse": {
                    "name": "get_weather",
                    "response": {"result": "12°C, light rain"},
                }
            }
        ],
        "role": "user",
    }
    tools = emulator.requests[-1].body["tools"]
    assert tools == [
        {
            "functionDeclarations": [
                {
                    "description": "The weather in a city.",
                    "name": "get_weather",
                    "parameters_json_schema": dict(WEATHER.parameters),
                }
            ]
        }
    ]


async def test_consecutive_results_go_in_one_turn_and_errors_as_error(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    calls = (ToolCall("c1", "get_weather", {"city": "Oslo"}), ToolCall("c2", "get_time", {}))
    history = (
        Message("user", "Weather and time in Oslo?"),
        Message("assistant", "Let me look.", tool_calls=calls),
        Message.tool_result("c1", "sunny"),
        Message.tool_result("c2", "clock broke", name="get_time", is_error=True),
    )
    result = await gemini.complete(
        StreamRequest(model=MODEL, messages=history, tools=(WEATHER, TIME))
    )
    assert result.text == "The tools said: sunny; clock broke."
    model_turn, results = emulator.requests[-1].body["contents"][1:]
    assert model_turn["parts"][0] == {"text": "Let me look."}
    assert [p["functionCall"]["id"] for p in model_turn["parts"][1:]] == ["c1", "c2"]
    assert results == {
        "parts": [
            {
                "functionResponse": {
                    "id": "c1",
                    "name": "get_weather",
                    "response": {"result": "sunny"},
                }
            },
            {
                "functionResponse": {
                    "id": "c2",
                    "name": "get_time",
                    "response": {"error": "clock broke"},
                }
            },
        ],
        "role": "user",
    }


async def test_a_result_whose_tool_is_unknown_fails_before_the_network(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    request = StreamRequest(
        model=MODEL, messages=(Message("user", "Hi"), Message.tool_result("c9", "x"))
    )
    _, error = await run(gemini, request)
    assert isinstance(error, errors.InvalidRequestError)
    assert "name" in str(error)
    assert emulator.requests == []


# -- 4. parallel calls --------------------------------------------------------------------


async def test_parallel_calls_keep_distinct_ids_and_indexes(gemini: GeminiProvider) -> None:
    events, error = await run(
        gemini, "Both", model=with_knobs(MODEL, tool_calls=2), tools=[WEATHER, TIME]
    )
    assert error is None
    calls = calls_of(events)
    assert [(c.index, c.name) for c in calls] == [(0, "get_weather"), (1, "get_time")]
    assert len({c.id for c in calls}) == 2
    assert [d.index for d in deltas_of(events)] == [0, 1]


# -- 5. tool_choice, parallel_tool_calls --------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("required", {"mode": "ANY"}),
        ("get_time", {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
    ],
)
async def test_tool_choice_reaches_the_wire(
    gemini: GeminiProvider, emulator: Emulator, choice: str, wire: dict[str, Any]
) -> None:
    events, error = await run(gemini, "Go", model=MODEL, tools=[WEATHER, TIME], tool_choice=choice)
    assert error is None
    assert emulator.requests[-1].body["toolConfig"] == {"functionCallingConfig": wire}
    names = [c.name for c in calls_of(events)]
    assert names == {"required": ["get_weather"], "get_time": ["get_time"], "none": []}.get(
        choice, names
    )


async def test_parallel_tool_calls_is_reported_ignored(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    events, _ = await run(gemini, "Go", model=MODEL, tools=[WEATHER], parallel_tool_calls=False)
    assert done_of(events).details["ignored"] == ("parallel_tool_calls",)
    body = emulator.requests[-1].body
    assert "parallel" not in json.dumps(body).lower()
    assert "toolConfig" not in body  # tool_choice None: the vendor's default


# -- 6. structured output -----------------------------------------------------------------


async def test_structured_output_streams_partial_objects_and_a_validated_instance(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    events, error = await run(gemini, "A city", model=MODEL, response_format=City)
    assert error is None
    partials = [e.value for e in events if isinstance(e, PartialObjectEvent)]
    assert len(partials) > 1
    (obj,) = [e.value for e in events if isinstance(e, ObjectEvent)]
    assert isinstance(obj, City)
    assert City.model_validate_json(text_of(events)) == obj
    assert isinstance(events[-1], DoneEvent)
    config = emulator.requests[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == dict(ResponseFormat.of(City).schema)
    result = await gemini.complete("A city", model=MODEL, response_format=City)
    assert isinstance(result.object, City)


async def test_a_reply_that_does_not_fit_raises_after_its_tokens(gemini: GeminiProvider) -> None:
    bad = '{"name": "Oslo", "population": "many"}'
    events, error = await run(
        gemini, "A city", model=MODEL, response_format=City, **_knobs(reply=bad)
    )
    assert isinstance(error, errors.StructuredOutputError)
    assert error.raw_text == bad
    assert text_of(events) == bad


# -- 7. content parts ---------------------------------------------------------------------


async def test_image_and_pdf_bytes_arrive_as_inline_data(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    message = Message(
        "user", (TextPart("What is this?"), ImagePart(data=PNG), DocumentPart(data=PDF))
    )
    events, error = await run(gemini, StreamRequest(model=MODEL, messages=(message,)))
    assert error is None
    assert text_of(events)
    parts = emulator.requests[-1].body["contents"][0]["parts"]
    assert parts[0] == {"text": "What is this?"}
    assert parts[1] == {
        "inlineData": {"data": ImagePart(data=PNG).base64, "mime_type": "image/png"}
    }
    assert parts[2]["inlineData"]["mime_type"] == "application/pdf"


@pytest.mark.parametrize(
    "part",
    [
        ImagePart(url="https://example.com/cat.png"),
        DocumentPart(url="https://example.com/paper.pdf"),
    ],
    ids=["image_url", "document_url"],
)
async def test_urls_fail_before_the_network(
    gemini: GeminiProvider, emulator: Emulator, part: Any
) -> None:
    message = Message("user", (TextPart("Look"), part))
    with pytest.raises(errors.UnsupportedContentError, match="gemini"):
        gemini.request(StreamRequest(model=MODEL, messages=(message,)))
    _, error = await run(gemini, StreamRequest(model=MODEL, messages=(message,)))
    assert isinstance(error, errors.UnsupportedContentError)
    assert len(emulator.requests) == 0


async def test_the_emulator_refuses_a_malformed_inline_part(emulator: Emulator) -> None:
    client = _sdk(emulator.base_url("gemini"))
    try:
        with pytest.raises(genai.errors.ClientError, match="Unsupported MIME type"):
            await client.aio.models.generate_content(
                model=MODEL,
                contents=[types.Part(inline_data=types.Blob(data=b"x", mime_type="app/x"))],
            )
    finally:
        await client.aio.aclose()
        session = client._api_client._http_options.aiohttp_client
        assert session is not None
        await session.close()


# -- 8. faults inside a call --------------------------------------------------------------


async def test_a_drop_inside_the_arguments_is_interrupted_without_the_call(
    gemini: GeminiProvider, emulator: Emulator
) -> None:
    knobs = _knobs(reply="Let me check.", chunk=50, fault="drop", after=2)
    events, error = await run(gemini, "Go", model=MODEL, tools=[WEATHER], **knobs)
    assert isinstance(error, errors.StreamInterruptedError)
    assert calls_of(events) == []
    assert deltas_of(events) == []
    assert text_of(events) == "Let me check."
    # the emulator cut the calls' event inside the arguments
    assert emulator.requests[-1].events_sent == 2


async def test_arguments_that_are_not_json_raise_naming_the_tool(
    gemini: GeminiProvider, raw_stream: bool
) -> None:
    # Gemini's form of it: finishReason MALFORMED_FUNCTION_CALL, the attempt in finishMessage.
    knobs = _knobs(args="{city: Oslo")
    events, error = await run(gemini, "Go", model=MODEL, tools=[WEATHER], **knobs)
    assert isinstance(error, errors.ToolArgumentsError)
    assert error.tool_name == "get_weather"
    assert "get_weather" in str(error)
    assert calls_of(events) == []
    if raw_stream:  # with two tools only finishMessage tells which (the SDK drops it)
        _, error = await run(gemini, "Go", model=MODEL, tools=[TIME, WEATHER], **knobs)
        assert isinstance(error, errors.ToolArgumentsError)
        assert error.tool_name == "get_time"
        assert "{city: Oslo" in error.arguments


async def test_max_tokens_inside_a_call_ends_with_length_and_no_call(
    gemini: GeminiProvider,
) -> None:
    events, error = await run(gemini, "Go", model=MODEL, tools=[WEATHER], max_tokens=2)
    assert error is None
    assert calls_of(events) == []
    assert done_of(events).finish_reason is FinishReason.LENGTH

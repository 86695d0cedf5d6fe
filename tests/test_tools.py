"""Tools, content parts and response formats as a user builds them: schemas, validation, errors.

Everything here fails (or not) before any network call.
"""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import pytest

import rxllm
from rxllm import errors
from rxllm.events import DoneEvent, FinishReason, ToolCallDeltaEvent, ToolCallEvent, Usage
from rxllm.request import Message, StreamRequest
from rxllm.structured import ResponseFormat
from rxllm.tools import Tool, as_tool, with_complete_calls

PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def forecast(
    city: str,
    days: int = 3,
    units: Literal["c", "f"] = "c",
    detail: Annotated[bool, pydantic.Field(description="Hour by hour.")] = False,
) -> str:
    """The forecast for a city.

    Args:
        city: The city's name,
            as people write it.
        days: How many days ahead.

    Returns:
        The forecast as text.
    """
    return f"{city} {days} {units} {detail}"


class Search(pydantic.BaseModel):
    """Search the docs."""

    query: str
    limit: int = 5


def test_a_typed_function_becomes_a_schema_with_its_descriptions() -> None:
    made = Tool.from_function(forecast)
    assert made.name == "forecast"
    assert made.description == "The forecast for a city."
    schema = made.parameters
    assert schema["type"] == "object"
    assert schema["required"] == ["city"]
    props = schema["properties"]
    assert props["city"] == {
        "type": "string",
        "description": "The city's name, as people write it.",
    }
    assert props["days"] == {"type": "integer", "default": 3, "description": "How many days ahead."}
    assert props["units"]["enum"] == ["c", "f"]
    assert props["detail"]["description"] == "Hour by hour."
    assert "title" not in schema
    assert "title" not in props["city"]


async def test_a_tool_validates_and_coerces_its_arguments_and_runs_sync_or_async() -> None:
    made = Tool.from_function(forecast)
    assert await made.call({"city": "Oslo", "days": "2"}) == "Oslo 2 c False"
    with pytest.raises(pydantic.ValidationError):
        await made.call({"days": 2})

    @rxllm.tool(name="later")
    async def slow(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert slow.name == "later"
    assert await slow.call({"x": 21}) == 42


def test_tools_from_models_and_dicts() -> None:
    assert as_tool(Search).parameters["properties"]["limit"] == {"type": "integer", "default": 5}
    assert as_tool(Search).description == "Search the docs."
    openai_shape = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    assert as_tool(openai_shape).name == "f"
    anthropic_shape = {"name": "g", "input_schema": {"type": "object", "properties": {}}}
    assert as_tool(anthropic_shape).parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tools": [{"name": "get weather"}]}, "Tool.name must be"),
        ({"tools": [{"name": "f", "parameters": {"type": "string"}}]}, "of type 'object'"),
        ({"tools": [forecast, forecast]}, "two tools with one name"),
        ({"tools": [forecast], "tool_choice": "search"}, "name of an offered tool"),
        ({"tool_choice": "required"}, "but no tools"),
        ({"tools": "forecast"}, "must be a list of tools"),
        ({"response_format": str}, "pydantic model class or a JSON Schema"),
        ({"response_format": {"fields": 1}}, "must be a JSON Schema"),
    ],
)
def test_bad_tool_and_format_fields_fail_naming_the_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        StreamRequest(model="m", prompt="hi", **fields)


def test_messages_for_tools_and_parts_are_checked() -> None:
    with pytest.raises(ValueError, match="tool_call_id"):
        Message("tool", "result")
    with pytest.raises(ValueError, match="belong to an assistant"):
        Message("user", "hi", tool_calls=({"id": "c", "name": "f"},))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only user messages take images"):
        Message("assistant", ["see", rxllm.image(PNG_HEAD)])
    calling = Message("assistant", "", tool_calls=({"id": "c", "name": "f", "arguments": {}},))  # type: ignore[arg-type]
    assert calling.tool_calls[0].name == "f"
    assert Message("user", ["a", "b"]).content == "ab"  # text alone stays a string
    with_image = Message("user", [rxllm.image(PNG_HEAD)])
    assert with_image.parts[0].media_type == "image/png"  # type: ignore[union-attr]


def test_image_and_document_parts(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(PNG_HEAD)
    assert rxllm.image(path).data == PNG_HEAD
    assert rxllm.image(str(path)).media_type == "image/png"
    assert rxllm.image(b"\xff\xd8\xff\xe0rest").media_type == "image/jpeg"
    assert rxllm.image("https://example.com/cat.webp").media_type == "image/webp"
    assert rxllm.document(b"%PDF-1.7 ...").media_type == "application/pdf"
    with pytest.raises(ValueError, match="unknown image type"):
        rxllm.image(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        rxllm.image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="only PDF"):
        rxllm.document(b"plain text")
    assert "bytes" in rxllm.image(PNG_HEAD).describe()


def test_response_format_from_a_model_a_schema_or_openais_shape() -> None:
    from_model = ResponseFormat.of(Search)
    assert from_model.model is Search
    assert from_model.name == "Search"
    assert from_model.schema["required"] == ["query"]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "title": "My thing"}
    assert ResponseFormat.of(schema).name == "My_thing"
    wrapped = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert ResponseFormat.of(wrapped).schema == schema
    with pytest.raises(errors.StructuredOutputError) as caught:
        from_model.validate('{"limit": 2}', provider="p", model="m")
    assert caught.value.raw_text == '{"limit": 2}'
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.raw_text == '{"limit": 2}'
    assert copy.errors == caught.value.errors


async def _events(*items: Any) -> Any:
    for item in items:
        yield item


def _done(reason: FinishReason) -> DoneEvent:
    return DoneEvent(Usage(), reason, "m", "p")


async def _complete(*items: Any) -> list[Any]:
    return [e async for e in with_complete_calls(_events(*items), provider="p", model="m")]


async def test_deltas_become_one_call_each_when_the_next_starts_or_the_reply_ends() -> None:
    out = await _complete(
        ToolCallDeltaEvent(0, '{"ci', id="c0", name="f"),
        ToolCallDeltaEvent(0, 'ty": "Oslo"}'),
        ToolCallDeltaEvent(1, "", id="c1", name="g"),
        _done(FinishReason.TOOL_CALLS),
    )
    calls = [e for e in out if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.name, dict(c.arguments)) for c in calls] == [
        ("c0", "f", {"city": "Oslo"}),
        ("c1", "g", {}),
    ]
    assert out.index(calls[0]) == 2  # complete as soon as call 1 started
    assert isinstance(out[-1], DoneEvent)


async def test_arguments_that_are_not_json_name_the_tool() -> None:
    with pytest.raises(errors.ToolArgumentsError, match="'f'") as caught:
        await _complete(
            ToolCallDeltaEvent(0, "{oops", id="c0", name="f"), _done(FinishReason.TOOL_CALLS)
        )
    assert caught.value.tool_name == "f"
    assert caught.value.arguments == "{oops"
    with pytest.raises(errors.ToolArgumentsError, match="not an object"):
        await _complete(ToolCallDeltaEvent(0, "[1]", id="c0", name="f"), _done(FinishReason.STOP))


async def test_a_call_cut_by_max_tokens_is_reported_not_made() -> None:
    out = await _complete(
        ToolCallDeltaEvent(0, '{"ci', id="c0", name="f"), _done(FinishReason.LENGTH)
    )
    assert not [e for e in out if isinstance(e, ToolCallEvent)]
    assert out[-1].details["incomplete_tool_calls"] == [
        {"index": 0, "id": "c0", "name": "f", "arguments": '{"ci'}
    ]

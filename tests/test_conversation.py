"""``Conversation`` and structured output on the four vendors, through their SDKs."""

from __future__ import annotations

import json
import urllib.parse

import pydantic
import pytest

import rxllm
from rxllm import errors
from rxllm.emulator import Emulator, with_knobs
from rxllm.events import ObjectEvent, PartialObjectEvent, TokenEvent
from rxllm.registry import BoundModel
from tests.operators.emulated import NAMES, build, run
from tests.operators.emulated import model as base_model

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


class City(pydantic.BaseModel):
    name: str
    population: int
    coastal: bool
    districts: list[str]


def bound(name: str, emulator: Emulator, **knobs: object) -> BoundModel:
    return BoundModel(build(name, emulator), with_knobs(base_model(name), **knobs))


@rxllm.tool
def get_weather(city: str) -> str:
    """The weather now in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("name", NAMES)
async def test_history_grows_with_each_reply_and_is_sent_each_turn(
    name: str, emulator: Emulator
) -> None:
    chat = rxllm.Conversation(bound(name, emulator), system="Be brief.", max_tokens=50)
    try:
        first = await chat.send("Name a prime.")
        second = await chat.send("And the next one?")
    finally:
        await chat.model.provider.aclose()

    assert [m.role for m in chat.messages] == ["user", "assistant", "user", "assistant"]
    assert chat.messages[1].text == first.text
    assert chat.messages[3].text == second.text
    wire = json.dumps(emulator.requests[1].body, ensure_ascii=False)
    assert "Name a prime." in wire
    assert first.text in wire
    assert "Be brief." in wire


@pytest.mark.parametrize("name", NAMES)
async def test_a_tool_turn_keeps_calls_results_and_answer_and_round_trips_through_json(
    name: str, emulator: Emulator
) -> None:
    chat = rxllm.Conversation(bound(name, emulator), tools=[get_weather])
    try:
        result = await chat.send(["What is the weather here?", rxllm.image(PNG)])
        saved = chat.to_json()
        again = rxllm.Conversation.from_json(saved, chat.model, tools=[get_weather])
        assert again.messages == chat.messages
        fork = again.fork()
        await fork.send("Thanks!")
    finally:
        await chat.model.provider.aclose()

    assert [m.role for m in chat.messages] == ["user", "assistant", "tool", "assistant"]
    assert chat.messages[1].tool_calls[0].name == "get_weather"
    assert chat.messages[2].tool_call_id == chat.messages[1].tool_calls[0].id
    assert result.text == chat.messages[3].text == f"The tools said: {chat.messages[2].text}."
    assert len(again) == 4
    assert len(fork) == 6
    # The image went out with the first turn, and again with the history in the fork's.
    assert json.loads(saved)["messages"][0]["content"][1]["type"] == "image"


@pytest.mark.parametrize("name", NAMES)
async def test_a_failed_reply_leaves_the_history_as_it_was(name: str, emulator: Emulator) -> None:
    chat = rxllm.Conversation(bound(name, emulator, fault="server_error"))
    try:
        with pytest.raises(errors.ServerError):
            await chat.send("Hi")
    finally:
        await chat.model.provider.aclose()
    assert chat.messages == []


async def test_the_same_history_goes_to_every_model_in_compare(emulator: Emulator) -> None:
    models = [bound(name, emulator) for name in NAMES]
    chat = rxllm.Conversation(None, system="Be brief.")
    chat.add(rxllm.Message("user", "Remember the number 7."), rxllm.Message("assistant", "OK."))
    try:
        results = await chat.compare("Which number?", models).collect()
    finally:
        for m in models:
            await m.provider.aclose()
    assert set(results) == {m.spec for m in models}
    assert all(r.error is None and r.text for r in results.values())
    for record in emulator.requests:
        wire = json.dumps(record.body, ensure_ascii=False)
        assert "Remember the number 7." in wire
        assert "Which number?" in wire


@pytest.mark.parametrize("name", NAMES)
async def test_structured_output_streams_partial_objects_and_ends_validated(
    name: str, emulator: Emulator
) -> None:
    model = bound(name, emulator)
    try:
        events, error = await run(model.stream("A city, please.", response_format=City))
        result = await model.complete("A city, please.", response_format=City)
    finally:
        await model.provider.aclose()

    assert error is None
    partials = [e.value for e in events if isinstance(e, PartialObjectEvent)]
    assert len(partials) > 3
    assert isinstance(partials[0], dict)
    final = [e.value for e in events if isinstance(e, ObjectEvent)]
    assert len(final) == 1
    assert isinstance(final[0], City)
    assert partials[-1] == final[0].model_dump()
    assert result.object == final[0]
    assert City.model_validate_json(result.text) == result.object


@pytest.mark.parametrize("name", NAMES)
async def test_a_reply_that_does_not_fit_the_schema_raises_with_its_text(
    name: str, emulator: Emulator
) -> None:
    reply = '{"population": "many"}'  # no comma: Gemini's knobs travel in the URL path
    # The google-genai SDK unquotes the model name once before it builds the URL.
    knob = urllib.parse.quote(reply, safe="") if name == "gemini" else reply
    model = bound(name, emulator, reply=knob)
    try:
        events, error = await run(model.stream("A city, please.", response_format=City))
    finally:
        await model.provider.aclose()
    assert isinstance(error, errors.StructuredOutputError)
    assert error.raw_text == reply
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == reply  # kept
    assert {tuple(e["loc"]) for e in error.errors} >= {("population",), ("name",)}


def test_conversation_json_keeps_every_kind_of_turn() -> None:
    chat = rxllm.Conversation(
        None,
        system="S",
        messages=[
            {
                "role": "user",
                "content": [
                    "look",
                    {"type": "image", "data": "iVBORw0KGgo=", "media_type": "image/png"},
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "name": "f", "arguments": {"a": 1}}],
            },
            {"role": "tool", "content": "done", "tool_call_id": "c1", "name": "f"},
            {
                "role": "tool",
                "content": "boom",
                "tool_call_id": "c2",
                "name": "f",
                "is_error": True,
            },
        ],
    )
    back = rxllm.Conversation.from_json(chat.to_json())
    assert back.messages == chat.messages
    assert back.system == "S"
    assert back.messages[0].parts[1].data == b"\x89PNG\r\n\x1a\n"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not a saved rxllm conversation"):
        rxllm.Conversation.from_json(json.dumps({"messages": []}))


async def test_a_conversation_on_a_provider_uses_its_default_model_and_saves(
    emulator: Emulator,
) -> None:
    provider = build("openai", emulator)
    chat = rxllm.Conversation(provider)
    try:
        result = await chat.send("Hi")
    finally:
        await provider.aclose()
    assert result.model == provider.default_model
    saved = json.loads(chat.to_json())
    assert saved["model"] is None
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert repr(chat) == "<Conversation openai: 2 messages>"

"""The stream vocabulary: requests validated before the network, events frozen and slotted."""

from __future__ import annotations

import dataclasses

import pytest

from rxllm import (
    DoneEvent,
    ErrorEvent,
    FinishReason,
    Message,
    ReasoningEvent,
    StreamRequest,
    TokenEvent,
    Usage,
    errors,
)

# -- bad input is a ValueError that names the field -----------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"model": "m"}, "prompt or messages"),
        ({"model": "m", "messages": ()}, "prompt or messages"),
        ({"model": "m", "prompt": ""}, "prompt"),
        ({"model": "m", "prompt": "   "}, "prompt"),
        ({"model": "m", "prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "prompt": "hi", "max_tokens": -5}, "max_tokens"),
        ({"model": "m", "prompt": "hi", "temperature": -0.1}, "temperature"),
        ({"model": "m", "prompt": "hi", "temperature": 2.01}, "temperature"),
        ({"model": "m", "prompt": "hi", "temperature": float("nan")}, "temperature"),
        ({"model": "", "prompt": "hi"}, "model"),
        ({"model": "  ", "prompt": "hi"}, "model"),
        ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"model": "m", "prompt": "hi", "reasoning": "extreme"}, "reasoning"),
        ({"model": "m", "prompt": 5}, "prompt"),
        ({"model": "m", "prompt": "hi", "temperature": True}, "temperature"),
        ({"model": "m", "prompt": "hi", "max_tokens": True}, "max_tokens"),
    ],
)
def test_bad_request_fields_raise_a_value_error_naming_the_field(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        StreamRequest(**fields)  # type: ignore[arg-type]


def test_an_unknown_role_is_a_value_error_naming_role() -> None:
    with pytest.raises(ValueError, match=r"Message\.role"):
        Message("robot", "hi")  # type: ignore[arg-type]


@pytest.mark.parametrize("temperature", [0, 0.0, 1, 2, 2.0])
def test_temperature_bounds_are_inclusive(temperature: float) -> None:
    assert StreamRequest(model="m", prompt="hi", temperature=temperature).temperature == temperature


def test_a_prompt_becomes_the_last_user_message() -> None:
    request = StreamRequest(
        model="m",
        prompt="and now?",
        messages=[Message("user", "hi"), {"role": "assistant", "content": "hello"}],  # type: ignore[list-item]
        system="be brief",
    )
    assert request.conversation() == (
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("user", "and now?"),
    )
    assert request.system_prompt() == "be brief"


def test_a_request_is_frozen() -> None:
    request = StreamRequest(model="m", prompt="hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.prompt = "other"  # type: ignore[misc]


def test_replace_validates_again() -> None:
    request = StreamRequest(model="m", prompt="hi")
    with pytest.raises(ValueError, match="max_tokens"):
        request.replace(max_tokens=0)


# -- events --------------------------------------------------------------------------------


def all_events() -> list[object]:
    return [
        TokenEvent("a"),
        ReasoningEvent("b"),
        DoneEvent(Usage(), FinishReason.STOP, "m", "p"),
        ErrorEvent(errors.ServerError("x")),
    ]


@pytest.mark.parametrize("event", all_events(), ids=lambda e: type(e).__name__)
def test_events_are_frozen_and_slotted(event: object) -> None:
    assert not hasattr(event, "__dict__")
    assert hasattr(type(event), "__slots__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.type = "other"  # type: ignore[attr-defined]


def test_events_are_tagged_by_type() -> None:
    assert [e.type for e in all_events()] == ["token", "reasoning", "done", "error"]  # type: ignore[attr-defined]


def test_the_type_tag_cannot_be_passed_in() -> None:
    with pytest.raises(TypeError):
        TokenEvent("a", type="done")  # type: ignore[call-arg]


def test_events_match_by_class_and_position() -> None:
    match TokenEvent("hi"):
        case TokenEvent(text):
            assert text == "hi"
        case _:
            pytest.fail("TokenEvent did not match")


def test_finish_reasons_are_the_normalized_set() -> None:
    assert {reason.value for reason in FinishReason} == {
        "stop",
        "length",
        "token_limit",
        "content_filter",
        "cancelled",
        "timeout",
        "tool_calls",
        "error",
    }
    assert FinishReason("length") is FinishReason.LENGTH
    assert FinishReason.STOP == "stop"


# -- usage ---------------------------------------------------------------------------------


def test_total_tokens_is_prompt_plus_completion() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=7, reasoning_tokens=3)
    assert usage.total_tokens == 17


def test_usages_add_up_and_cost_is_known_only_when_both_are() -> None:
    a = Usage(prompt_tokens=10, completion_tokens=7, reasoning_tokens=3, cost=0.25)
    b = Usage(prompt_tokens=1, completion_tokens=2, reasoning_tokens=1, cost=0.5)
    assert a + b == Usage(prompt_tokens=11, completion_tokens=9, reasoning_tokens=4, cost=0.75)
    assert (a + Usage(prompt_tokens=1)).cost is None
    assert sum([a, b], Usage()).total_tokens == 20


def test_with_cost_returns_a_copy() -> None:
    usage = Usage(prompt_tokens=1)
    assert usage.with_cost(0.1) == Usage(prompt_tokens=1, cost=0.1)
    assert usage.cost is None


@pytest.mark.parametrize("field", ["prompt_tokens", "completion_tokens", "reasoning_tokens"])
def test_negative_token_counts_are_rejected_by_name(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Usage(**{field: -1})  # type: ignore[arg-type]


def test_reasoning_tokens_are_a_subset_of_completion_tokens() -> None:
    with pytest.raises(ValueError, match="reasoning_tokens"):
        Usage(completion_tokens=1, reasoning_tokens=2)

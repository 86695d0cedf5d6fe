"""Tools across the four vendors: ``run_tools``, operators on the loop, retries inside a call.

Each runs through the vendor's official SDK against the emulator, whose model calls
the offered tools (arguments fitting their schemas) for ``tool_rounds`` rounds and
then answers ``The tools said: <results>.``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any, Literal

import pytest
from reactivex import operators as ops

import rxllm
from rxllm import errors
from rxllm.emulator import Emulator, with_knobs
from rxllm.events import (
    DoneEvent,
    FinishReason,
    StreamEvent,
    TokenEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from rxllm.operators import cancel_when, retry_on_interrupt, take_tokens, timeout
from rxllm.provider import Provider
from tests.operators.emulated import NAMES, build, run, text_of
from tests.operators.emulated import model as base_model

pytestmark = pytest.mark.parametrize("name", NAMES)


def model(name: str, **knobs: object) -> str:
    if name == "gemini":  # google-genai unquotes the model name once before the URL
        knobs = {k: urllib.parse.quote(str(v), safe="") for k, v in knobs.items()}
    return with_knobs(base_model(name), **knobs)


@rxllm.tool
def get_weather(city: str, units: Literal["c", "f"] = "c") -> str:
    """The weather now in a city.

    Args:
        city: The city's name.
        units: Celsius or Fahrenheit.
    """
    return f"12°{units.upper()} and light rain in {city}"


@rxllm.tool
async def local_time(city: str) -> dict[str, str]:
    """The local time in a city."""
    await asyncio.sleep(0)
    return {"city": city, "time": "14:05"}


@rxllm.tool
def broken(reason: str) -> str:
    """A tool that always fails."""
    raise ValueError(f"cannot do that: {reason}")


def events_of(events: list[StreamEvent], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_two_rounds_end_with_the_answer_and_the_results_on_the_wire(
    name: str, emulator: Emulator
) -> None:
    provider = build(name, emulator)
    try:
        stream = rxllm.run_tools(
            provider, "Weather in Oslo?", model=model(name), tools=[get_weather], max_tokens=200
        )
        events, error = await run(stream)
    finally:
        await provider.aclose()

    assert error is None
    calls = events_of(events, ToolCallEvent)
    results = events_of(events, ToolResultEvent)
    assert [c.name for c in calls] == ["get_weather"]
    assert isinstance(calls[0].arguments["city"], str)
    assert results[0].id == calls[0].id
    assert results[0].content == get_weather.function(**calls[0].arguments)
    assert text_of(events) == f"The tools said: {results[0].content}."
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.finish_reason == FinishReason.STOP
    assert done.details["tool_rounds"] == 2
    assert len(events_of(events, DoneEvent)) == 1
    # Two requests; the second carried the call and its result back.
    assert len(emulator.requests) == 2
    second = json.dumps(emulator.requests[1].body, ensure_ascii=False)
    assert results[0].content in second
    assert calls[0].id in second or name == "gemini"  # Gemini may match results by name
    # Usage is summed over both rounds.
    first_usage = emulator.requests[0]
    assert first_usage.completed
    assert emulator.requests[1].completed
    assert done.usage.completion_tokens > 0


async def test_parallel_calls_run_together_sync_and_async_and_a_failure_goes_back(
    name: str, emulator: Emulator
) -> None:
    provider = build(name, emulator)
    try:
        stream = rxllm.run_tools(
            provider,
            "Weather, time and a failure?",
            model=model(name, tool_calls=3),
            tools=[get_weather, local_time, broken],
        )
        result = await rxllm.collect(stream)
        events, _ = await run(stream)
    finally:
        await provider.aclose()

    assert [c.name for c in result.tool_calls] == ["get_weather", "local_time", "broken"]
    assert len({c.id for c in result.tool_calls}) == 3
    results = events_of(events, ToolResultEvent)
    assert [r.is_error for r in results] == [False, False, True]
    assert results[1].content.startswith('{"city":')
    assert results[2].content.startswith("Error: ValueError: cannot do that")
    assert "Error: ValueError: cannot do that" in result.text  # the model was told


async def test_max_rounds_stops_a_model_that_keeps_calling(name: str, emulator: Emulator) -> None:
    provider = build(name, emulator)
    try:
        stream = rxllm.run_tools(
            provider,
            "Weather?",
            model=model(name),
            tools=[get_weather],
            tool_choice="required",
            max_rounds=2,
        )
        result = await rxllm.collect(stream)
    finally:
        await provider.aclose()

    assert result.finish_reason == FinishReason.TOOL_CALLS
    assert result.details["tool_rounds_exhausted"] is True
    assert len(result.tool_calls) == 2
    assert len(emulator.requests) == 2


async def test_a_tool_without_a_function_is_left_to_the_caller(
    name: str, emulator: Emulator
) -> None:
    offered = rxllm.Tool("lookup", "Look a thing up.", {"type": "object", "properties": {}})
    provider = build(name, emulator)
    try:
        result = await rxllm.collect(
            rxllm.run_tools(provider, "Look it up", model=model(name), tools=[offered])
        )
    finally:
        await provider.aclose()
    assert result.finish_reason == FinishReason.TOOL_CALLS
    assert result.details["tool_calls_pending"] == [result.tool_calls[0].id]
    assert len(emulator.requests) == 1


async def test_take_tokens_stops_the_whole_loop_and_closes_the_open_connection(
    name: str, emulator: Emulator
) -> None:
    provider = build(name, emulator)
    try:
        stream = rxllm.run_tools(
            provider,
            "Weather?",
            model=model(name, tps=200),
            tools=[get_weather],
        ).pipe(take_tokens(2))
        events, error = await run(stream)
        await emulator.wait_for_disconnects_async(1)
    finally:
        await provider.aclose()
    assert error is None
    assert len(events_of(events, TokenEvent)) == 2
    assert events_of(events, ToolResultEvent)  # the first round ran its tool
    assert len(emulator.requests) == 2
    assert emulator.requests[1].disconnected


async def test_cancel_when_and_timeout_stop_the_loop_in_its_second_round(
    name: str, emulator: Emulator
) -> None:
    provider = build(name, emulator)
    try:
        # Seconds per round: the call's arguments (fragments or whole), then the answer.
        slow = model(name, tps=5)
        trigger = asyncio.get_running_loop().create_future()
        seen_result = False

        def on_the_answers_first_token(event: StreamEvent) -> None:
            nonlocal seen_result
            seen_result = seen_result or isinstance(event, ToolResultEvent)
            if seen_result and isinstance(event, TokenEvent) and not trigger.done():
                trigger.set_result(None)

        stop = rxllm.from_async_iterable(lambda: _after(trigger))
        cancelled = (
            rxllm.run_tools(provider, "Weather?", model=slow, tools=[get_weather])
            .pipe(ops.do_action(on_the_answers_first_token))
            .pipe(cancel_when(stop))
        )
        events, error = await run(cancelled)
        assert error is None
        done = events[-1]
        assert isinstance(done, DoneEvent)
        assert done.finish_reason == FinishReason.CANCELLED
        assert events_of(events, ToolResultEvent)
        await emulator.wait_for_disconnects_async(1)
        assert len(emulator.requests) == 2
        assert emulator.requests[1].disconnected

        timed = rxllm.run_tools(provider, "Weather?", model=slow, tools=[get_weather]).pipe(
            timeout(total=1.0)
        )
        _, error = await run(timed)
        assert isinstance(error, errors.TimeoutError)
        await emulator.wait_for_disconnects_async(2)
        assert emulator.requests[-1].disconnected
    finally:
        await provider.aclose()


async def _after(future: asyncio.Future[None]) -> Any:
    await future
    yield True


async def test_a_drop_inside_the_arguments_is_retried_without_repeating_a_call(
    name: str, emulator: Emulator
) -> None:
    provider: Provider[Any] = build(name, emulator)
    try:
        # Two fragments of the call arrive, then the connection drops, once.
        args = '{"city": "Reykjavík"}'
        stream = provider.stream(
            "Weather?",
            model=model(name, fault="drop", after=2, times=1, args=args),
            tools=[get_weather],
        ).pipe(retry_on_interrupt(3, backoff=0))
        events, error = await run(stream)
    finally:
        await provider.aclose()
    assert error is None
    calls = events_of(events, ToolCallEvent)
    assert len(calls) == 1
    assert calls[0].arguments == {"city": "Reykjavík"}
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.finish_reason == FinishReason.TOOL_CALLS
    assert done.details["attempts"] == 2
    deltas = events_of(events, ToolCallDeltaEvent)
    if len(deltas) > 1:  # the vendor streams fragments: the cut call started over
        assert done.details["tool_calls_restarted"] == [0]
        restarted = [i for i, d in enumerate(deltas) if d.id is not None]
        resent = "".join(d.arguments for d in deltas[restarted[-1] :])
        assert json.loads(resent) == {"city": "Reykjavík"}

"""fallback: an error before the first token switches to the next stream; after it, propagates."""

from __future__ import annotations

from typing import Any

import pytest
from reactivex.testing import TestScheduler

from rxllm.emulator import Emulator
from rxllm.errors import AuthenticationError, RateLimitedError, StreamInterruptedError
from rxllm.events import DoneEvent, FinishReason, StreamEvent, Usage
from rxllm.operators import fallback
from rxllm.provider import Provider

from .emulated import NAMES, build, model, provider, run, text_of
from .stream_marbles import done, on_completed, on_error, on_next, subscribe, think, tok

__all__ = ["provider"]  # the fixture, parametrized over the four providers


def answered(event: StreamEvent, winner: int, **details: Any) -> StreamEvent:
    assert isinstance(event, DoneEvent)
    return DoneEvent(
        usage=event.usage,
        finish_reason=event.finish_reason,
        model=event.model,
        provider=event.provider,
        details={**event.details, "winner": winner, **details},
    )


def provider_done(provider: str) -> StreamEvent:
    return DoneEvent(
        usage=Usage(prompt_tokens=10, completion_tokens=1),
        finish_reason=FinishReason.STOP,
        model=f"{provider}-model",
        provider=provider,
    )


def test_an_error_before_the_first_token_switches_to_the_next_stream() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_error(10, AuthenticationError("bad key")))
    second = scheduler.create_cold_observable(on_error(5, RateLimitedError("429")))
    third = scheduler.create_cold_observable(
        on_next(5, tok("hi")), on_next(6, provider_done("gemini")), on_completed(6)
    )
    results = scheduler.start(lambda: fallback(first, second, third))
    assert results.messages == [
        on_next(220, tok("hi")),
        on_next(221, answered(provider_done("gemini"), 2)),
        on_completed(221),
    ]
    # one at a time: each starts the moment the one before it failed
    assert first.subscriptions == [subscribe(200, 210)]
    assert second.subscriptions == [subscribe(210, 215)]
    assert third.subscriptions == [subscribe(215, 221)]


def test_the_done_says_which_provider_answered() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(
        on_next(5, tok("a")), on_next(6, provider_done("anthropic")), on_completed(6)
    )
    second = scheduler.create_cold_observable(on_next(1, tok("never")))
    results = scheduler.start(lambda: fallback(first, second))
    final = results.messages[-2].value.value  # type: ignore[union-attr]
    assert isinstance(final, DoneEvent)
    assert final.provider == "anthropic"
    assert final.details["winner"] == 0
    assert second.subscriptions == []


def test_an_error_after_the_first_token_propagates() -> None:
    scheduler = TestScheduler()
    cut = StreamInterruptedError("dropped")
    first = scheduler.create_cold_observable(on_next(5, tok("a")), on_error(10, cut))
    second = scheduler.create_cold_observable(on_next(1, tok("b")))
    results = scheduler.start(lambda: fallback(first, second))
    assert results.messages == [on_next(205, tok("a")), on_error(210, cut)]
    assert first.subscriptions == [subscribe(200, 210)]
    assert second.subscriptions == []


def test_reasoning_flows_live_and_a_failure_after_it_still_switches() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(
        on_next(5, think("hmm")), on_error(10, StreamInterruptedError("dropped"))
    )
    second = scheduler.create_cold_observable(
        on_next(5, tok("b")), on_next(6, done()), on_completed(6)
    )
    results = scheduler.start(lambda: fallback(first, second))
    assert results.messages == [
        on_next(205, think("hmm")),
        on_next(215, tok("b")),
        on_next(
            216,
            answered(done(), 1, discarded_usage=Usage(completion_tokens=1, reasoning_tokens=1)),
        ),
        on_completed(216),
    ]
    assert second.subscriptions == [subscribe(210, 216)]


def test_when_every_stream_fails_the_last_error_is_raised() -> None:
    scheduler = TestScheduler()
    last = RateLimitedError("429 again")
    first = scheduler.create_cold_observable(on_error(10, RateLimitedError("429")))
    second = scheduler.create_cold_observable(on_error(10, last))
    results = scheduler.start(lambda: fallback(first, second))
    assert results.messages == [on_error(220, last)]
    assert second.subscriptions == [subscribe(210, 220)]


def test_disposing_disposes_the_running_stream_and_starts_no_other() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_next(500, tok("a")))
    second = scheduler.create_cold_observable(on_next(1, tok("b")))
    results = scheduler.start(lambda: fallback(first, second), disposed=300)
    assert results.messages == []
    assert first.subscriptions == [subscribe(200, 300)]
    assert second.subscriptions == []


def test_fallback_needs_a_stream() -> None:
    with pytest.raises(ValueError, match="at least one stream"):
        fallback()


# -- end to end, on each provider against the emulator ------------------------------------


async def test_a_provider_failing_before_its_first_token_falls_back_to_another(
    provider: Provider[Any], emulator: Emulator
) -> None:
    other_name = NAMES[(NAMES.index(provider.name) + 1) % len(NAMES)]
    other = build(other_name, emulator)
    try:
        failing = provider.stream("Fall back", model=model(provider.name, fault="overloaded"))
        answering = other.stream("Fall back", model=model(other_name))
        events, error = await run(fallback(failing, answering))
    finally:
        await other.aclose()
    assert error is None
    assert text_of(events)
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert final.provider == other_name
    assert final.details["winner"] == 1
    assert [r.fault for r in emulator.requests] == ["overloaded", None]


async def test_a_failure_after_the_first_token_propagates_without_falling_back(
    provider: Provider[Any], emulator: Emulator
) -> None:
    cut = provider.stream("Fall back", model=model(provider.name, fault="drop", after=2))
    spare = provider.stream("Fall back", model=model(provider.name))
    events, error = await run(fallback(cut, spare))
    assert isinstance(error, StreamInterruptedError)
    assert text_of(events)
    assert len(emulator.requests) == 1

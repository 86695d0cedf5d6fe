"""race: the first stream to produce a token wins; the others are disposed at that moment."""

from __future__ import annotations

from typing import Any

import pytest
from reactivex.testing import TestScheduler

from rxllm.emulator import Emulator
from rxllm.errors import OverloadedError, RateLimitedError
from rxllm.events import DoneEvent, Usage
from rxllm.operators import race
from rxllm.provider import Provider

from .emulated import model, provider, run, text_of
from .stream_marbles import (
    PROMPT,
    decided,
    done,
    marble_stream,
    on_completed,
    on_error,
    on_next,
    subscribe,
    think,
    tok,
)

__all__ = ["provider"]  # the fixture, parametrized over the four providers


def test_the_first_token_wins_and_the_others_are_disposed_at_that_moment() -> None:
    scheduler = TestScheduler()
    slow = scheduler.create_cold_observable(
        on_next(30, tok("slow")), on_next(40, done()), on_completed(40)
    )
    fast = scheduler.create_cold_observable(
        on_next(10, tok("fa")), on_next(20, tok("st")), on_next(50, done()), on_completed(50)
    )
    results = scheduler.start(lambda: race(slow, fast))
    assert results.messages == [
        on_next(210, tok("fa")),
        on_next(220, tok("st")),
        on_next(250, decided(done(), 1)),
        on_completed(250),
    ]
    assert slow.subscriptions == [subscribe(200, 210)]
    assert fast.subscriptions == [subscribe(200, 250)]


def test_reasoning_is_held_until_its_stream_wins_and_losers_reasoning_never_shows() -> None:
    scheduler = TestScheduler()
    thinker = scheduler.create_cold_observable(
        on_next(5, think("hmm")), on_next(15, think("so")), on_next(30, tok("late"))
    )
    winner = scheduler.create_cold_observable(
        on_next(8, think("ok")), on_next(20, tok("A")), on_next(25, done()), on_completed(25)
    )
    results = scheduler.start(lambda: race(thinker, winner))
    assert results.messages == [
        on_next(220, think("ok")),
        on_next(220, tok("A")),
        # the loser had produced two reasoning events (a plain source: no prompt to estimate)
        on_next(
            225,
            decided(done(), 1, discarded_usage=Usage(completion_tokens=2, reasoning_tokens=2)),
        ),
        on_completed(225),
    ]
    assert thinker.subscriptions == [subscribe(200, 220)]


def test_losers_on_llm_streams_are_charged_their_estimated_prompt() -> None:
    scheduler = TestScheduler()
    loser = marble_stream(scheduler.create_cold_observable(on_next(100, tok("late"))))
    winner = scheduler.create_cold_observable(
        on_next(10, tok("A")), on_next(20, done()), on_completed(20)
    )
    results = scheduler.start(lambda: race(loser, winner))
    assert results.messages[-2] == on_next(
        220, decided(done(), 1, discarded_usage=Usage(prompt_tokens=len(PROMPT) // 4))
    )


def test_a_contender_failing_before_any_token_drops_out_and_the_race_goes_on() -> None:
    scheduler = TestScheduler()
    failing = scheduler.create_cold_observable(on_error(5, RateLimitedError("429")))
    other = scheduler.create_cold_observable(
        on_next(10, tok("B")), on_next(20, done()), on_completed(20)
    )
    results = scheduler.start(lambda: race(failing, other))
    assert results.messages == [
        on_next(210, tok("B")),
        on_next(220, decided(done(), 1)),
        on_completed(220),
    ]
    assert failing.subscriptions == [subscribe(200, 205)]
    assert other.subscriptions == [subscribe(200, 220)]


def test_when_all_fail_the_last_error_is_raised() -> None:
    scheduler = TestScheduler()
    first_error, last_error = RateLimitedError("429"), OverloadedError("529")
    a = scheduler.create_cold_observable(on_error(5, first_error))
    b = scheduler.create_cold_observable(on_error(9, last_error))
    results = scheduler.start(lambda: race(a, b))
    assert results.messages == [on_error(209, last_error)]
    assert a.subscriptions == [subscribe(200, 205)]
    assert b.subscriptions == [subscribe(200, 209)]


def test_errors_of_the_winner_after_its_first_token_propagate() -> None:
    scheduler = TestScheduler()
    cut = OverloadedError("gone")
    winner = scheduler.create_cold_observable(on_next(10, tok("A")), on_error(20, cut))
    loser = scheduler.create_cold_observable(on_next(15, tok("B")))
    results = scheduler.start(lambda: race(winner, loser))
    assert results.messages == [on_next(210, tok("A")), on_error(220, cut)]
    assert loser.subscriptions == [subscribe(200, 210)]


def test_a_done_without_tokens_also_wins() -> None:
    scheduler = TestScheduler()
    empty = scheduler.create_cold_observable(on_next(10, done(0)), on_completed(10))
    talker = scheduler.create_cold_observable(on_next(20, tok("x")))
    results = scheduler.start(lambda: race(empty, talker))
    assert results.messages == [on_next(210, decided(done(0), 0)), on_completed(210)]
    assert talker.subscriptions == [subscribe(200, 210)]


def test_disposing_the_race_disposes_every_contender() -> None:
    scheduler = TestScheduler()
    a = scheduler.create_cold_observable(on_next(500, tok("a")))
    b = scheduler.create_cold_observable(on_next(600, tok("b")))
    results = scheduler.start(lambda: race(a, b), disposed=300)
    assert results.messages == []
    assert a.subscriptions == [subscribe(200, 300)]
    assert b.subscriptions == [subscribe(200, 300)]


def test_a_single_stream_passes_through_unchanged() -> None:
    scheduler = TestScheduler()
    only = scheduler.create_cold_observable(
        on_next(10, tok("a")), on_next(20, done()), on_completed(20)
    )
    results = scheduler.start(lambda: race(only))
    assert results.messages == [on_next(210, tok("a")), on_next(220, done()), on_completed(220)]


def test_an_empty_race_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="at least one stream"):
        race()


# -- end to end, on each provider against the emulator ------------------------------------


async def test_the_first_to_answer_wins_and_the_loser_is_disconnected(
    provider: Provider[Any], emulator: Emulator
) -> None:
    # the winner waits a little so that the loser's request surely reached the server
    slow = provider.stream("Race me", model=model(provider.name, ttft=10))
    fast = provider.stream("Race me", model=model(provider.name, ttft=0.3))
    events, error = await run(race(slow, fast))
    assert error is None
    assert text_of(events)
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert final.details["winner"] == 1
    assert final.provider == provider.name
    disconnects = await emulator.wait_for_disconnects_async(1)
    assert [r.behaviour.ttft for r in disconnects] == [10]
    assert len(emulator.requests) == 2

"""hedge: the backup is subscribed only if the primary has no token after `after` seconds."""

from __future__ import annotations

import math
from typing import Any

import pytest
from reactivex.testing import TestScheduler

from rxllm.emulator import Emulator
from rxllm.errors import AuthenticationError, RateLimitedError
from rxllm.events import DoneEvent, Usage
from rxllm.operators import hedge
from rxllm.provider import Provider

from .emulated import model, provider, run, text_of
from .stream_marbles import (
    decided,
    done,
    on_completed,
    on_error,
    on_next,
    subscribe,
    think,
    tok,
)

__all__ = ["provider"]  # the fixture, parametrized over the four providers


def test_a_prompt_primary_never_starts_the_backup() -> None:
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(
        on_next(10, tok("a")), on_next(80, done()), on_completed(80)
    )
    backup = scheduler.create_cold_observable(on_next(1, tok("b")))
    results = scheduler.start(lambda: hedge(primary, backup, after=50))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(280, decided(done(), 0)),
        on_completed(280),
    ]
    assert primary.subscriptions == [subscribe(200, 280)]
    assert backup.subscriptions == []


def test_a_slow_primary_gets_a_backup_at_after_and_the_first_token_wins() -> None:
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(
        on_next(100, tok("slow")), on_next(110, done()), on_completed(110)
    )
    backup = scheduler.create_cold_observable(
        on_next(20, tok("fast")), on_next(30, done()), on_completed(30)
    )
    results = scheduler.start(lambda: hedge(primary, backup, after=50))
    assert results.messages == [
        on_next(270, tok("fast")),
        on_next(280, decided(done(), 1)),
        on_completed(280),
    ]
    assert primary.subscriptions == [subscribe(200, 270)]
    assert backup.subscriptions == [subscribe(250, 280)]


def test_the_primary_can_still_win_after_the_backup_started() -> None:
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(
        on_next(60, tok("p")), on_next(70, done()), on_completed(70)
    )
    backup = scheduler.create_cold_observable(on_next(40, tok("b")))
    results = scheduler.start(lambda: hedge(primary, backup, after=50))
    assert results.messages == [
        on_next(260, tok("p")),
        on_next(270, decided(done(), 0)),
        on_completed(270),
    ]
    assert backup.subscriptions == [subscribe(250, 260)]


def test_reasoning_alone_does_not_count_as_a_token() -> None:
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(
        on_next(10, think("hmm")), on_next(100, tok("p")), on_next(110, done())
    )
    backup = scheduler.create_cold_observable(
        on_next(5, tok("b")), on_next(6, done()), on_completed(6)
    )
    results = scheduler.start(lambda: hedge(primary, backup, after=50))
    assert results.messages == [
        on_next(255, tok("b")),
        on_next(
            256,
            decided(done(), 1, discarded_usage=Usage(completion_tokens=1, reasoning_tokens=1)),
        ),
        on_completed(256),
    ]
    assert primary.subscriptions == [subscribe(200, 255)]
    assert backup.subscriptions == [subscribe(250, 256)]


def test_a_primary_failing_early_starts_the_backup_at_once() -> None:
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(on_error(10, RateLimitedError("429")))
    backup = scheduler.create_cold_observable(
        on_next(5, tok("b")), on_next(6, done()), on_completed(6)
    )
    results = scheduler.start(lambda: hedge(primary, backup, after=50))
    assert results.messages == [
        on_next(215, tok("b")),
        on_next(216, decided(done(), 1)),
        on_completed(216),
    ]
    assert primary.subscriptions == [subscribe(200, 210)]
    assert backup.subscriptions == [subscribe(210, 216)]


def test_both_failing_raises_the_last_error() -> None:
    scheduler = TestScheduler()
    last = RateLimitedError("429")
    primary = scheduler.create_cold_observable(on_error(100, last))
    backup = scheduler.create_cold_observable(on_error(10, AuthenticationError("bad key")))
    results = scheduler.start(lambda: hedge(primary, backup, after=50))
    # the backup fails at 260 while the primary still runs; it fails at 300
    assert results.messages == [on_error(300, last)]
    assert backup.subscriptions == [subscribe(250, 260)]


def test_disposing_before_after_cancels_the_backup() -> None:
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(on_next(500, tok("p")))
    backup = scheduler.create_cold_observable(on_next(1, tok("b")))
    results = scheduler.start(lambda: hedge(primary, backup, after=50), disposed=240)
    assert results.messages == []
    assert primary.subscriptions == [subscribe(200, 240)]
    assert backup.subscriptions == []


@pytest.mark.parametrize("after", [-1, math.nan, math.inf, "1", True])
def test_bad_after_is_refused_when_built(after: Any) -> None:
    scheduler = TestScheduler()
    stream = scheduler.create_cold_observable(on_completed(1))
    with pytest.raises(ValueError, match="after"):
        hedge(stream, stream, after=after)


# -- end to end, on each provider against the emulator ------------------------------------


async def test_a_slow_primary_is_hedged_and_disconnected_when_the_backup_answers(
    provider: Provider[Any], emulator: Emulator
) -> None:
    primary = provider.stream("Hedge me", model=model(provider.name, ttft=10))
    backup = provider.stream("Hedge me", model=model(provider.name, ttft=0.2))
    events, error = await run(hedge(primary, backup, after=0.3))
    assert error is None
    assert text_of(events)
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert final.details["winner"] == 1
    disconnects = await emulator.wait_for_disconnects_async(1)
    assert [r.behaviour.ttft for r in disconnects] == [10]
    assert len(emulator.requests) == 2


async def test_a_prompt_primary_never_sends_the_backup_request(
    provider: Provider[Any], emulator: Emulator
) -> None:
    primary = provider.stream("Hedge me", model=model(provider.name))
    backup = provider.stream("Hedge me", model=model(provider.name, ttft=0.1))
    events, error = await run(hedge(primary, backup, after=5))
    assert error is None
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert final.details["winner"] == 0
    assert [r.behaviour.ttft for r in emulator.requests] == [0]

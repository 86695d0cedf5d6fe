"""drop_when_busy: tokens beyond what may wait are dropped; the final done counts them."""

from __future__ import annotations

import dataclasses

import pytest
from reactivex.testing import TestScheduler

from rxllm import DoneEvent, StreamEvent
from rxllm.operators import drop_when_busy

from .stream_marbles import (
    BusyConsumer,
    done,
    on_completed,
    on_error,
    on_next,
    subscribe,
    think,
    tok,
)


def counted(event: StreamEvent, tokens: int, reasoning: int = 0) -> StreamEvent:
    """``event`` (a done) as drop_when_busy delivers it: with the counts of what it dropped."""
    assert isinstance(event, DoneEvent)
    details = {**event.details, "dropped_tokens": tokens, "dropped_reasoning": reasoning}
    return dataclasses.replace(event, details=details)


def test_tokens_beyond_capacity_are_dropped_while_the_consumer_is_busy() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(215, tok("b")),  # a still waits: no room
        on_next(220, think("c")),  # no room either
        on_next(240, tok("d")),
        on_next(260, done()),
        on_completed(262),
    )
    results = scheduler.start(lambda: source.pipe(drop_when_busy(1, BusyConsumer(scheduler, 15))))
    assert results.messages == [
        on_next(225, tok("a")),
        on_next(255, tok("d")),
        on_next(275, counted(done(), tokens=1, reasoning=1)),
        on_completed(290),
    ]
    assert source.subscriptions == [subscribe(200, 262)]


def test_capacity_is_how_many_may_wait() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(211, tok("b")),
        on_next(212, tok("c")),
        on_next(213, tok("d")),
        on_next(214, done()),
        on_completed(215),
    )
    results = scheduler.start(lambda: source.pipe(drop_when_busy(3, BusyConsumer(scheduler, 10))))
    assert results.messages == [
        on_next(220, tok("a")),
        on_next(230, tok("b")),
        on_next(240, tok("c")),
        on_next(250, counted(done(), tokens=1)),
        on_completed(260),
    ]


def test_a_fast_consumer_misses_nothing_and_the_done_says_so() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(220, tok("b")), on_next(230, done()), on_completed(240)
    )
    results = scheduler.start(lambda: source.pipe(drop_when_busy()))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(230, counted(done(), tokens=0)),
        on_completed(240),
    ]
    assert source.subscriptions == [subscribe(200, 240)]


def test_errors_are_never_dropped() -> None:
    scheduler = TestScheduler()
    error = RuntimeError("cut")
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(212, tok("b")), on_error(214, error)
    )
    results = scheduler.start(lambda: source.pipe(drop_when_busy(1, BusyConsumer(scheduler, 10))))
    assert results.messages == [on_next(220, tok("a")), on_error(230, error)]
    assert source.subscriptions == [subscribe(200, 214)]


def test_disposing_stops_the_source_and_the_pending_delivery() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, tok("a")), on_next(240, tok("b")))
    results = scheduler.start(
        lambda: source.pipe(drop_when_busy(1, BusyConsumer(scheduler, 50))), disposed=230
    )
    assert results.messages == []
    assert source.subscriptions == [subscribe(200, 230)]


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True, None])
def test_bad_capacity_is_refused_when_the_operator_is_built(capacity: object) -> None:
    with pytest.raises(ValueError, match=r"drop_when_busy\(capacity=\)"):
        drop_when_busy(capacity)  # type: ignore[arg-type]


def test_a_bad_scheduler_is_refused_when_the_operator_is_built() -> None:
    with pytest.raises(ValueError, match=r"drop_when_busy\(scheduler=\)"):
        drop_when_busy(1, "ui")  # type: ignore[arg-type]

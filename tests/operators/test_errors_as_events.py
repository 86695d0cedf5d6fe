"""errors_as_events: an error travels in-band as an ErrorEvent, then the stream completes."""

from __future__ import annotations

import reactivex
from reactivex.testing import TestScheduler

from rxllm import ErrorEvent, errors
from rxllm.operators import errors_as_events

from .stream_marbles import done, on_completed, on_error, on_next, subscribe, tok


def test_an_error_becomes_an_event_then_completion() -> None:
    scheduler = TestScheduler()
    error = errors.RateLimitedError("slow down", provider="openai", retry_after=1)
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_error(220, error), on_next(230, tok("late"))
    )
    results = scheduler.start(lambda: source.pipe(errors_as_events()))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(220, ErrorEvent(error)),
        on_completed(220),
    ]
    assert source.subscriptions == [subscribe(200, 220)]


def test_a_stream_without_error_is_untouched() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(220, done()), on_completed(230)
    )
    results = scheduler.start(lambda: source.pipe(errors_as_events()))
    assert results.messages == [on_next(210, tok("a")), on_next(220, done()), on_completed(230)]
    assert source.subscriptions == [subscribe(200, 230)]


def test_one_failing_lane_does_not_end_the_others() -> None:
    scheduler = TestScheduler()
    error = errors.OverloadedError("busy")
    failing = scheduler.create_hot_observable(on_next(210, tok("x")), on_error(220, error))
    healthy = scheduler.create_hot_observable(
        on_next(215, tok("a")), on_next(230, tok("b")), on_next(240, done()), on_completed(250)
    )
    results = scheduler.start(
        lambda: reactivex.merge(failing.pipe(errors_as_events()), healthy.pipe(errors_as_events()))
    )
    assert results.messages == [
        on_next(210, tok("x")),
        on_next(215, tok("a")),
        on_next(220, ErrorEvent(error)),
        on_next(230, tok("b")),
        on_next(240, done()),
        on_completed(250),
    ]
    assert failing.subscriptions == [subscribe(200, 220)]
    assert healthy.subscriptions == [subscribe(200, 250)]

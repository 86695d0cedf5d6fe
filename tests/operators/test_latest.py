"""latest: while the consumer is busy, waiting tokens coalesce; no text lost, order kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from reactivex.testing import TestScheduler

from rxllm import ErrorEvent, StreamEvent, errors, from_async_iterable
from rxllm.operators import latest

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


def test_tokens_that_arrive_while_the_consumer_is_busy_are_coalesced() -> None:
    scheduler = TestScheduler()
    consumer = BusyConsumer(scheduler, delay=15)
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(215, tok("b")),
        on_next(220, tok("c")),
        on_next(240, tok("d")),
        on_next(260, done()),
        on_completed(262),
    )
    results = scheduler.start(lambda: source.pipe(latest(consumer)))
    assert results.messages == [
        on_next(225, tok("abc")),
        on_next(255, tok("d")),
        on_next(275, done()),
        on_completed(290),
    ]
    assert source.subscriptions == [subscribe(200, 262)]


def test_events_in_one_burst_reach_the_consumer_as_one() -> None:
    # Default scheduler: the one given to subscribe. A burst at one tick is delivered
    # once the burst is over, as one token event.
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(210, tok("b")),
        on_next(210, tok("c")),
        on_next(220, tok("d")),
        on_next(230, done()),
        on_completed(230),
    )
    results = scheduler.start(lambda: source.pipe(latest()))
    assert results.messages == [
        on_next(210, tok("abc")),
        on_next(220, tok("d")),
        on_next(230, done()),
        on_completed(230),
    ]
    assert source.subscriptions == [subscribe(200, 230)]


def test_only_like_events_merge_and_everything_keeps_its_order() -> None:
    scheduler = TestScheduler()
    error_event: StreamEvent = ErrorEvent(errors.ServerError("lane"))
    source = scheduler.create_hot_observable(
        on_next(210, think("h")),
        on_next(211, think("m")),
        on_next(212, tok("a")),
        on_next(213, error_event),
        on_next(214, tok("b")),
        on_next(215, tok("c")),
    )
    results = scheduler.start(lambda: source.pipe(latest(BusyConsumer(scheduler, 100))))
    assert results.messages == [
        on_next(310, think("hm")),
        on_next(410, tok("a")),
        on_next(510, error_event),
        on_next(610, tok("bc")),
    ]


def test_an_error_waits_behind_the_text_before_it() -> None:
    scheduler = TestScheduler()
    error = errors.StreamInterruptedError("dropped")
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(212, tok("b")), on_error(214, error)
    )
    results = scheduler.start(lambda: source.pipe(latest(BusyConsumer(scheduler, 10))))
    assert results.messages == [on_next(220, tok("ab")), on_error(230, error)]
    assert source.subscriptions == [subscribe(200, 214)]


def test_disposing_drops_what_waits_and_stops_the_source() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, tok("a")), on_next(240, tok("b")))
    results = scheduler.start(
        lambda: source.pipe(latest(BusyConsumer(scheduler, 50))), disposed=230
    )
    assert results.messages == []
    assert source.subscriptions == [subscribe(200, 230)]


def test_a_bad_scheduler_is_refused_when_the_operator_is_built() -> None:
    with pytest.raises(ValueError, match=r"latest\(scheduler=\)"):
        latest("ui")  # type: ignore[arg-type]


async def test_on_the_running_loop_a_burst_reaches_the_consumer_coalesced() -> None:
    async def burst() -> AsyncIterator[StreamEvent]:
        for i in range(100):  # never awaits: all of it arrives within one loop step
            yield tok(f"{i} ")
        yield done()

    got: list[StreamEvent] = []
    ended = asyncio.Event()
    from_async_iterable(burst).pipe(latest()).subscribe(got.append, on_completed=ended.set)
    await asyncio.wait_for(ended.wait(), 10)
    assert got == [tok("".join(f"{i} " for i in range(100))), done()]

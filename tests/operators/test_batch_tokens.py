"""batch_tokens: consecutive tokens merged by count and time; text and order exact, nothing lost."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import reactivex
from reactivex import abc
from reactivex.disposable import Disposable
from reactivex.testing import TestScheduler

from rxllm import DoneEvent, Provider, StreamEvent, TokenEvent
from rxllm.emulator import Emulator
from rxllm.operators import batch_tokens

from .emulated import model, provider, run, text_of
from .stream_marbles import done, on_completed, on_error, on_next, subscribe, think, tok

__all__ = ["provider"]  # the fixture, parametrized over the four providers


def test_by_count() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(230, tok("c")),
        on_next(240, tok("d")),
        on_next(250, tok("e")),
        on_next(260, done()),
        on_completed(270),
    )
    results = scheduler.start(lambda: source.pipe(batch_tokens(max_count=2)))
    assert results.messages == [
        on_next(220, tok("ab")),
        on_next(240, tok("cd")),
        on_next(260, tok("e")),
        on_next(260, done()),
        on_completed(270),
    ]
    assert source.subscriptions == [subscribe(200, 270)]


def test_by_time_measured_from_a_batchs_first_token() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(250, tok("c")),  # a new batch: its timer runs to 280
        on_next(290, tok("d")),
        on_next(300, done()),
        on_completed(310),
    )
    results = scheduler.start(lambda: source.pipe(batch_tokens(max_interval=30)))
    assert results.messages == [
        on_next(240, tok("ab")),
        on_next(280, tok("c")),
        on_next(300, tok("d")),
        on_next(300, done()),
        on_completed(310),
    ]
    assert source.subscriptions == [subscribe(200, 310)]


def test_count_and_time_together_whichever_comes_first() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(211, tok("b")),
        on_next(212, tok("c")),  # count 3 reached: flushed now, its timer is void
        on_next(220, tok("d")),
        on_completed(300),
    )
    results = scheduler.start(
        lambda: source.pipe(batch_tokens(max_count=3, max_interval=timedelta(seconds=30)))
    )
    assert results.messages == [
        on_next(212, tok("abc")),
        on_next(250, tok("d")),
        on_completed(300),
    ]


def test_other_events_flush_the_batch_first_and_keep_their_place() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, think("hm")),
        on_next(220, tok("a")),
        on_next(230, tok("b")),
        on_next(240, think("so")),
        on_next(250, tok("c")),
        on_next(260, done()),
        on_completed(260),
    )
    results = scheduler.start(lambda: source.pipe(batch_tokens(max_count=10)))
    assert results.messages == [
        on_next(210, think("hm")),
        on_next(240, tok("ab")),
        on_next(240, think("so")),
        on_next(260, tok("c")),
        on_next(260, done()),
        on_completed(260),
    ]


def test_the_last_partial_batch_comes_before_completion_or_error() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(220, tok("b")), on_completed(230)
    )
    results = scheduler.start(lambda: source.pipe(batch_tokens(max_count=5, max_interval=100)))
    assert results.messages == [on_next(230, tok("ab")), on_completed(230)]
    assert source.subscriptions == [subscribe(200, 230)]

    scheduler = TestScheduler()
    error = RuntimeError("cut")
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(220, tok("b")), on_error(230, error)
    )
    results = scheduler.start(lambda: source.pipe(batch_tokens(max_interval=100)))
    assert results.messages == [on_next(230, tok("ab")), on_error(230, error)]
    assert source.subscriptions == [subscribe(200, 230)]


def test_completion_due_with_the_timer_flush_loses_and_repeats_nothing() -> None:
    # The completion was scheduled before the timer: it runs first at 240.
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(220, tok("b")), on_completed(240)
    )
    results = scheduler.start(lambda: source.pipe(batch_tokens(max_interval=30)))
    assert results.messages == [on_next(240, tok("ab")), on_completed(240)]
    assert source.subscriptions == [subscribe(200, 240)]


class LateCompletion:
    """A source that sends ``a`` and ``b``, then, scheduled only after the operator's timer
    was armed, completes at the same tick as that timer: so the timer runs first."""

    def __init__(self, scheduler: TestScheduler) -> None:
        self.scheduler = scheduler
        self.subscriptions: list[Any] = []

    def observable(self) -> reactivex.Observable[StreamEvent]:
        def on_subscribe(
            observer: abc.ObserverBase[StreamEvent], _: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            start = self.scheduler.clock
            self.subscriptions.append(subscribe(int(start), 0))
            s = self.scheduler

            def complete_at_240(*_: Any) -> None:
                s.schedule_absolute(240, lambda *_: observer.on_completed())

            s.schedule_absolute(210, lambda *_: observer.on_next(tok("a")))
            s.schedule_absolute(220, lambda *_: observer.on_next(tok("b")))
            s.schedule_absolute(225, complete_at_240)  # enqueued after the timer (armed at 210)

            def dispose() -> None:
                self.subscriptions[-1] = subscribe(int(start), int(self.scheduler.clock))

            return Disposable(dispose)

        return reactivex.create(on_subscribe)


def test_timer_flush_due_with_the_completion_loses_and_repeats_nothing() -> None:
    scheduler = TestScheduler()
    source = LateCompletion(scheduler)
    results = scheduler.start(lambda: source.observable().pipe(batch_tokens(max_interval=30)))
    assert results.messages == [on_next(240, tok("ab")), on_completed(240)]
    assert source.subscriptions == [subscribe(200, 240)]


def test_disposing_stops_the_source_and_the_timer() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, tok("a")), on_next(260, tok("b")))
    results = scheduler.start(lambda: source.pipe(batch_tokens(max_interval=30)), disposed=230)
    assert results.messages == []
    assert source.subscriptions == [subscribe(200, 230)]


def test_text_is_exact_when_the_timer_and_the_source_run_on_different_threads() -> None:
    # A synchronous source on this thread, timers on rxllm's loop thread: real races
    # between timer flushes, count flushes and completion, many times over.
    texts = [str(i % 10) * (i % 3 + 1) for i in range(2000)]
    for _ in range(20):
        got: list[StreamEvent] = []
        ended = threading.Event()
        reactivex.from_iterable(TokenEvent(t) for t in texts).pipe(
            batch_tokens(max_count=7, max_interval=0.0001)
        ).subscribe(got.append, on_completed=ended.set)
        assert ended.wait(10)
        assert "".join(e.text for e in got if isinstance(e, TokenEvent)) == "".join(texts)


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"max_count": 0},
        {"max_count": 2.5},
        {"max_count": True},
        {"max_interval": 0},
        {"max_interval": -0.1},
        {"max_interval": float("nan")},
        {"max_count": 3, "max_interval": "1"},
    ],
)
def test_bad_limits_are_refused_when_the_operator_is_built(limits: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"batch_tokens\("):
        batch_tokens(**limits)  # type: ignore[arg-type]


# -- end to end, on each provider against the emulator ------------------------------------


async def test_a_real_reply_batched_by_time_keeps_its_exact_text(
    provider: Provider[Any], emulator: Emulator
) -> None:
    reference, error = await run(provider.stream("Hello", model=model(provider.name, tps=200)))
    assert error is None
    batched, error = await run(
        provider.stream("Hello", model=model(provider.name, tps=200)).pipe(
            batch_tokens(max_interval=0.1)
        )
    )
    assert error is None
    assert text_of(batched) == text_of(reference)
    assert len(batched) < len(reference)  # 200 tokens/s in batches of up to 100 ms: fewer events
    final, reference_final = batched[-1], reference[-1]
    assert isinstance(final, DoneEvent)
    assert isinstance(reference_final, DoneEvent)
    assert final.usage == reference_final.usage

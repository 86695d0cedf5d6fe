"""timeout: first token, idle and total limits end the stream with a done, then TimeoutError."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from types import FunctionType
from typing import Any, cast

import pytest
import reactivex
from reactivex.notification import OnError
from reactivex.testing import TestScheduler

from rxllm import DoneEvent, FinishReason, Provider, StreamEvent, errors, from_async_iterable
from rxllm.emulator import Emulator
from rxllm.operators import timeout

from .emulated import model, provider, run, text_of
from .stream_marbles import (
    done,
    estimated,
    marble_stream,
    on_completed,
    on_error,
    on_next,
    subscribe,
    think,
    tok,
)

__all__ = ["provider"]  # the fixture, parametrized over the four providers

TIMEOUT = FinishReason.TIMEOUT


def timed_out(phase: str) -> FunctionType:
    """Matches a TimeoutError of ``phase`` (put expected messages first: RxPY's predicates
    only match from the left of ``==``)."""

    def matches(error: Exception) -> bool:
        return isinstance(error, errors.TimeoutError) and error.phase == phase

    return cast(FunctionType, matches)


def test_idle_fires_after_silence_and_disposes_the_source() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(300, tok("c")),
        on_next(310, done()),
        on_completed(320),
    )
    results = scheduler.start(lambda: source.pipe(timeout(idle=50)))
    assert [
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(270, estimated(TIMEOUT, tokens=2, timeout_phase="idle")),
        on_error(270, timed_out("idle")),
    ] == results.messages
    assert source.subscriptions == [subscribe(200, 270)]


def test_idle_alone_also_limits_the_wait_for_the_first_event() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(260, tok("a")))
    results = scheduler.start(lambda: source.pipe(timeout(idle=50)))
    assert [
        on_next(250, estimated(TIMEOUT, timeout_phase="idle")),
        on_error(250, timed_out("idle")),
    ] == results.messages
    assert source.subscriptions == [subscribe(200, 250)]


def test_first_token_fires_when_nothing_arrives_in_time() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(260, tok("a")), on_completed(270))
    results = scheduler.start(lambda: source.pipe(timeout(first_token=50)))
    assert [
        on_next(250, estimated(TIMEOUT, timeout_phase="first_token")),
        on_error(250, timed_out("first_token")),
    ] == results.messages
    assert source.subscriptions == [subscribe(200, 250)]


def test_a_short_idle_does_not_undercut_a_longer_first_token_limit() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(240, tok("a")),  # 40 after subscribing: idle=10 must not have fired
        on_next(245, tok("b")),
        on_next(270, tok("c")),  # 25 after b: idle fires at 255
    )
    results = scheduler.start(lambda: source.pipe(timeout(first_token=50, idle=10)))
    assert [
        on_next(240, tok("a")),
        on_next(245, tok("b")),
        on_next(255, estimated(TIMEOUT, tokens=2, timeout_phase="idle")),
        on_error(255, timed_out("idle")),
    ] == results.messages
    assert source.subscriptions == [subscribe(200, 255)]


def test_reasoning_counts_as_the_first_token() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(230, think("hmm")), on_next(280, tok("a")), on_next(290, done()), on_completed(300)
    )
    results = scheduler.start(lambda: source.pipe(timeout(first_token=50)))
    assert [
        on_next(230, think("hmm")),
        on_next(280, tok("a")),
        on_next(290, done()),
        on_completed(300),
    ] == results.messages
    assert source.subscriptions == [subscribe(200, 300)]


def test_total_fires_even_while_tokens_keep_coming() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        *(on_next(210 + 10 * i, tok(str(i))) for i in range(10))
    )
    results = scheduler.start(lambda: source.pipe(timeout(idle=20, total=45)))
    assert [
        *(on_next(210 + 10 * i, tok(str(i))) for i in range(4)),
        on_next(245, estimated(TIMEOUT, tokens=4, timeout_phase="total")),
        on_error(245, timed_out("total")),
    ] == results.messages
    assert source.subscriptions == [subscribe(200, 245)]


def test_a_stream_that_finishes_in_time_passes_through_untouched() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(220, done()), on_completed(400)
    )
    # The done has passed: a slow completion after it is not a timeout.
    results = scheduler.start(lambda: source.pipe(timeout(first_token=15, idle=20, total=60)))
    assert [
        on_next(210, tok("a")),
        on_next(220, done()),
        on_completed(400),
    ] == results.messages
    assert source.subscriptions == [subscribe(200, 400)]


def test_an_error_from_the_source_passes_through_and_stops_the_timers() -> None:
    scheduler = TestScheduler()
    error = errors.StreamInterruptedError("dropped")
    source = scheduler.create_hot_observable(on_next(210, tok("a")), on_error(220, error))
    results = scheduler.start(lambda: source.pipe(timeout(idle=50)))
    assert results.messages == [on_next(210, tok("a")), on_error(220, error)]
    assert source.subscriptions == [subscribe(200, 220)]


def test_on_a_provider_stream_the_error_and_done_name_provider_and_model() -> None:
    scheduler = TestScheduler()
    events = scheduler.create_cold_observable(on_next(10, tok("a")))
    stream = marble_stream(events, model="marble-9")

    def create() -> reactivex.Observable[StreamEvent]:
        return stream.pipe(timeout(idle=30))

    results = scheduler.start(create)
    assert results.messages[:2] == [
        on_next(210, tok("a")),
        on_next(
            240,
            estimated(
                TIMEOUT,
                tokens=1,
                prompt=10,
                model="marble-9",
                provider="marble",
                timeout_phase="idle",
            ),
        ),
    ]
    failures = [m.value.exception for m in results.messages[2:] if isinstance(m.value, OnError)]
    assert len(failures) == 1
    error = failures[0]
    assert isinstance(error, errors.TimeoutError)
    assert (error.phase, error.provider, error.model) == ("idle", "marble", "marble-9")
    assert error.retryable
    assert "30s" in str(error)
    assert events.subscriptions == [subscribe(200, 240)]


def test_limits_may_be_timedeltas() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(260, tok("a")))
    results = scheduler.start(lambda: source.pipe(timeout(total=timedelta(seconds=50))))
    assert [
        on_next(250, estimated(TIMEOUT, timeout_phase="total")),
        on_error(250, timed_out("total")),
    ] == results.messages


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"idle": 0},
        {"idle": -1},
        {"first_token": float("nan")},
        {"total": float("inf")},
        {"idle": True},
        {"idle": "5"},
        {"first_token": 5, "total": timedelta(0)},
    ],
)
def test_bad_limits_are_refused_when_the_operator_is_built(limits: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"timeout\("):
        timeout(**limits)  # type: ignore[arg-type]


# -- on real loops (no TestScheduler): the timers run on the stream's loop ---------------


async def test_on_the_running_loop_an_idle_stream_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def stalls() -> AsyncIterator[StreamEvent]:
        yield tok("a")
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        yield tok("never")  # pragma: no cover

    got: list[StreamEvent] = []
    failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    from_async_iterable(stalls).pipe(timeout(idle=0.05)).subscribe(got.append, failed.set_result)
    error = await asyncio.wait_for(failed, 10)
    assert isinstance(error, errors.TimeoutError)
    assert error.phase == "idle"
    assert got == [tok("a"), estimated(TIMEOUT, tokens=1, timeout_phase="idle")]
    await asyncio.wait_for(cancelled.wait(), 10)


def test_without_a_loop_the_timers_run_on_rxllms_loop() -> None:
    failed = threading.Event()
    seen: list[Exception] = []

    def on_error(error: Exception) -> None:
        seen.append(error)
        failed.set()

    reactivex.never().pipe(timeout(first_token=0.01)).subscribe(on_error=on_error)
    assert failed.wait(10)
    assert isinstance(seen[0], errors.TimeoutError)
    assert seen[0].phase == "first_token"


# -- end to end, on each provider against the emulator ------------------------------------


async def test_a_stalled_stream_times_out_idle_and_frees_the_connection(
    provider: Provider[Any], emulator: Emulator
) -> None:
    stream = provider.stream("Tell me a story", model=model(provider.name, fault="stall", after=2))
    events, error = await run(stream.pipe(timeout(idle=0.5)))
    assert isinstance(error, errors.TimeoutError)
    assert error.phase == "idle"
    assert (error.provider, error.model) == (provider.name, stream.request.model)
    assert text_of(events)  # what came before the stall was delivered
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert [e for e in events if isinstance(e, DoneEvent)] == [final]
    assert final.finish_reason == FinishReason.TIMEOUT
    assert final.usage.completion_tokens >= 1
    assert final.details["timeout_phase"] == "idle"
    [request] = await emulator.wait_for_disconnects_async(1)
    assert request.fault == "stall"
    assert not request.completed


async def test_a_slow_first_token_times_out_and_frees_the_connection(
    provider: Provider[Any], emulator: Emulator
) -> None:
    stream = provider.stream("Hello", model=model(provider.name, ttft=5))
    events, error = await run(stream.pipe(timeout(first_token=0.3)))
    assert isinstance(error, errors.TimeoutError)
    assert error.phase == "first_token"
    assert not error.retryable
    assert text_of(events) == ""
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert final.finish_reason == FinishReason.TIMEOUT
    assert final.usage.completion_tokens == 0
    [request] = await emulator.wait_for_disconnects_async(1)
    assert not request.completed

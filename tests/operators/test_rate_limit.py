"""rate_limit: a shared budget; streams subscribe upstream only when it allows them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler
from reactivex.testing import TestScheduler
from reactivex.testing.coldobservable import ColdObservable
from reactivex.testing.mockobserver import MockObserver

from rxllm.emulator import Emulator
from rxllm.errors import RateLimitedError
from rxllm.events import DoneEvent, StreamEvent
from rxllm.operators import RateLimiter, rate_limit
from rxllm.provider import Provider
from rxllm.request import StreamRequest

from .emulated import model, provider, run
from .stream_marbles import PROMPT, MarbleStream, done, on_completed, on_error, on_next, subscribe

__all__ = ["provider"]  # the fixture, parametrized over the four providers


def reply(scheduler: TestScheduler, length: int = 10) -> ColdObservable[StreamEvent]:
    """A cold stream that answers with a done (real usage: 12 tokens) after ``length``."""
    return scheduler.create_cold_observable(on_next(length, done()), on_completed(length))


def subscribe_at(
    scheduler: TestScheduler, time: float, stream: Observable[StreamEvent], until: float = 1000
) -> MockObserver[StreamEvent]:
    """Subscribe ``stream`` at virtual ``time`` and dispose it at ``until``."""
    observer: MockObserver[StreamEvent] = scheduler.create_observer()
    holder: list[Any] = []
    scheduler.schedule_absolute(
        time, lambda s, _: holder.append(stream.subscribe(observer, scheduler=s))
    )
    scheduler.schedule_absolute(until, lambda _s, _t: holder[0].dispose())
    return observer


def test_requests_beyond_the_per_minute_budget_wait_for_it_to_refill() -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(requests_per_minute=2)
    streams = [reply(scheduler) for _ in range(3)]
    scheduler.start(lambda: reactivex.merge(*(s.pipe(rate_limit(limiter)) for s in streams)))
    # a bucket of 2 refilled at 2 a minute: the third waits 30 s for one request
    assert [s.subscriptions for s in streams] == [
        [subscribe(200, 210)],
        [subscribe(200, 210)],
        [subscribe(230, 240)],
    ]


def test_events_pass_through_unchanged() -> None:
    scheduler = TestScheduler()
    source = reply(scheduler)
    results = scheduler.start(lambda: source.pipe(rate_limit(RateLimiter(requests_per_minute=1))))
    assert results.messages == [on_next(210, done()), on_completed(210)]


def llm_stream(cold: ColdObservable[StreamEvent], max_tokens: int) -> MarbleStream:
    return MarbleStream(cold, StreamRequest(model="marble-1", prompt=PROMPT, max_tokens=max_tokens))


def test_token_cost_is_estimated_from_the_request_and_corrected_by_the_done() -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(tokens_per_minute=600)  # 10 tokens a second
    # each request is estimated at 10 (prompt) + 290 (max_tokens) = 300 tokens
    a = scheduler.create_cold_observable(on_next(5, done()), on_completed(5))  # 12 real
    b = scheduler.create_cold_observable(on_next(50, done()), on_completed(50))
    c = reply(scheduler)
    assert limiter.estimate(llm_stream(a, 290)) == 300
    scheduler.start(
        lambda: reactivex.merge(*(llm_stream(s, 290).pipe(rate_limit(limiter)) for s in (a, b, c)))
    )
    # without the correction c would wait until 230; a's done at 205 refunds 288 tokens
    assert a.subscriptions == [subscribe(200, 205)]
    assert b.subscriptions == [subscribe(200, 250)]
    assert c.subscriptions == [subscribe(205, 215)]


def test_without_a_done_the_estimate_stands() -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(tokens_per_minute=600)
    a = scheduler.create_cold_observable(on_completed(5))  # ended without usage
    b = scheduler.create_cold_observable(on_completed(50))
    c = reply(scheduler)
    scheduler.start(
        lambda: reactivex.merge(*(llm_stream(s, 290).pipe(rate_limit(limiter)) for s in (a, b, c)))
    )
    assert c.subscriptions == [subscribe(230, 240)]


def test_a_plain_observable_is_charged_the_default_cost() -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(tokens_per_minute=60, default_cost=30)  # 1 token a second
    a = scheduler.create_cold_observable(on_completed(1))
    b = scheduler.create_cold_observable(on_completed(1))
    c = scheduler.create_cold_observable(on_completed(1))
    scheduler.start(lambda: reactivex.merge(*(s.pipe(rate_limit(limiter)) for s in (a, b, c))))
    assert [s.subscriptions for s in (a, b, c)] == [
        [subscribe(200, 201)],
        [subscribe(200, 201)],
        [subscribe(230, 231)],
    ]


def test_a_rate_limited_error_pauses_every_stream_sharing_the_limiter() -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(requests_per_minute=600)  # plenty: only the pause holds b back
    refused = RateLimitedError("429", retry_after=100)
    a = scheduler.create_cold_observable(on_error(10, refused))
    b = reply(scheduler)
    first = subscribe_at(scheduler, 200, a.pipe(rate_limit(limiter)))
    second = subscribe_at(scheduler, 250, b.pipe(rate_limit(limiter)))
    scheduler.start()
    assert first.messages == [on_error(210, refused)]
    assert a.subscriptions == [subscribe(200, 210)]
    assert b.subscriptions == [subscribe(310, 320)]
    assert second.messages == [on_next(320, done()), on_completed(320)]


def test_a_pause_also_holds_streams_already_waiting() -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(requests_per_minute=2)
    a = scheduler.create_cold_observable(on_error(10, RateLimitedError("429", retry_after=100)))
    b, c = reply(scheduler), reply(scheduler)
    for stream in (a, b, c):  # apart: a's error must not end the others
        subscribe_at(scheduler, 200, stream.pipe(rate_limit(limiter)))
    scheduler.start()
    # c would start at 230 for the budget; the 429 at 210 pauses everyone until 310
    assert b.subscriptions == [subscribe(200, 210)]
    assert c.subscriptions == [subscribe(310, 320)]


def test_disposing_while_waiting_never_subscribes_and_gives_up_the_place() -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(requests_per_minute=1)
    a, b, c = reply(scheduler), reply(scheduler), reply(scheduler)
    subscribe_at(scheduler, 200, a.pipe(rate_limit(limiter)))
    gone = subscribe_at(scheduler, 200, b.pipe(rate_limit(limiter)), until=230)
    subscribe_at(scheduler, 200, c.pipe(rate_limit(limiter)))
    scheduler.start()
    assert gone.messages == []
    assert b.subscriptions == []
    # c takes b's place: the next request is free at 260
    assert c.subscriptions == [subscribe(260, 270)]


@pytest.mark.parametrize(
    "limits", [{"requests_per_minute": 1}, {"tokens_per_minute": 300}], ids=["requests", "tokens"]
)
def test_disposing_after_the_grant_but_before_the_start_refunds_the_charge(
    limits: dict[str, Any],
) -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(**limits)
    a, b = reply(scheduler), reply(scheduler)
    observer: MockObserver[StreamEvent] = scheduler.create_observer()

    def granted_then_disposed(s: Any, _: Any) -> None:
        # granted at once; its start is scheduled, and it is disposed before that runs
        llm_stream(a, 290).pipe(rate_limit(limiter)).subscribe(observer, scheduler=s).dispose()

    scheduler.schedule_absolute(200, granted_then_disposed)
    subscribe_at(scheduler, 210, llm_stream(b, 290).pipe(rate_limit(limiter)))
    scheduler.start()
    assert a.subscriptions == []
    assert observer.messages == []
    # a's request (and its 300 tokens) came back: b need not wait a minute for them
    assert b.subscriptions == [subscribe(210, 220)]


def test_a_retry_outside_the_limiter_waits_for_the_limiter_too() -> None:
    scheduler = TestScheduler()
    limiter = RateLimiter(requests_per_minute=60)
    refused = RateLimitedError("429", retry_after=100)
    first, second = scheduler.create_cold_observable(on_error(10, refused)), reply(scheduler)
    attempts = [first, second]
    source = reactivex.defer(lambda _: attempts.pop(0))
    results = scheduler.start(lambda: source.pipe(rate_limit(limiter), ops.retry(2)))
    assert first.subscriptions == [subscribe(200, 210)]
    assert second.subscriptions == [subscribe(310, 320)]
    assert results.messages == [on_next(320, done()), on_completed(320)]


def test_replacing_a_timer_on_another_loop_never_waits_for_that_loop() -> None:
    """No timer is disposed under the limiter's lock in a way that waits for another loop.

    Disposing an ``AsyncIOThreadSafeScheduler`` timer from a thread running a
    *different* loop waits for the timer's loop; if that loop is meanwhile in
    the limiter's wake-up (the timer fired) it waits for the lock: deadlock.
    Made deterministic by holding the lock while the wake-up is posted to the
    timer's loop, which is what happens when the timer fires while another
    loop's stream is replacing it.
    """
    timer_loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=timer_loop.run_forever, daemon=True)
    loop_thread.start()
    on_timer_loop = AsyncIOThreadSafeScheduler(timer_loop)
    limiter = RateLimiter(requests_per_minute=1)
    first = reactivex.never().pipe(rate_limit(limiter)).subscribe(scheduler=on_timer_loop)
    # the budget is spent: the second waits a minute, on a timer on timer_loop
    second = reactivex.never().pipe(rate_limit(limiter)).subscribe(scheduler=on_timer_loop)

    def timer_fires() -> None:  # what the limiter's wake-up does first: take the lock
        with limiter._lock:
            pass

    async def from_another_loop() -> None:
        with limiter._lock:
            timer_loop.call_soon_threadsafe(timer_fires)
            second.dispose()  # its place is given up: the timer is replaced

    other = threading.Thread(target=asyncio.run, args=(from_another_loop(),), daemon=True)
    other.start()
    other.join(timeout=5)
    assert not other.is_alive(), "deadlock: disposing the timer waited for its loop"
    first.dispose()
    timer_loop.call_soon_threadsafe(timer_loop.stop)
    loop_thread.join(timeout=5)
    timer_loop.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "requests_per_minute or tokens_per_minute"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"tokens_per_minute": -5}, "tokens_per_minute"),
        ({"requests_per_minute": float("inf")}, "finite"),
        ({"requests_per_minute": True}, "requests_per_minute"),
        ({"requests_per_minute": 1, "default_cost": 0}, "default_cost"),
        ({"requests_per_minute": 1, "default_max_tokens": "many"}, "default_max_tokens"),
    ],
)
def test_bad_limits_are_refused_when_built(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimiter(**args)


def test_rate_limit_needs_a_limiter() -> None:
    with pytest.raises(ValueError, match="RateLimiter"):
        rate_limit(50)  # type: ignore[arg-type]


# -- end to end, on each provider against the emulator ------------------------------------


async def test_a_429_from_the_provider_pauses_the_next_stream_on_the_limiter(
    provider: Provider[Any], emulator: Emulator
) -> None:
    limiter = RateLimiter(requests_per_minute=600)
    refused = provider.stream(
        "Limit me", model=model(provider.name, fault="rate_limited", retry_after=1)
    )
    _, error = await run(refused.pipe(rate_limit(limiter)))
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == pytest.approx(1.0)

    events, error = await run(
        provider.stream("Limit me", model=model(provider.name)).pipe(rate_limit(limiter))
    )
    assert error is None
    assert isinstance(events[-1], DoneEvent)
    first, second = emulator.requests
    assert second.started - first.started >= 1.0


def test_a_configured_provider_limit_is_one_shared_limiter() -> None:
    from rxllm.config import load_settings

    settings = load_settings(openai={"requests_per_minute": 30, "tokens_per_minute": 9000})
    first = RateLimiter.for_provider("openai", settings=settings)
    again = RateLimiter.for_provider("openai", settings=settings)
    assert first is not None
    assert first is again
    assert (first.requests_per_minute, first.tokens_per_minute) == (30, 9000)
    assert RateLimiter.for_provider("anthropic", settings=load_settings()) is None

"""retry_on_interrupt: retry what is retryable, resume a cut stream without repeating text."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex.testing import TestScheduler
from reactivex.testing.coldobservable import ColdObservable

from rxllm import errors
from rxllm.emulator import Emulator
from rxllm.errors import (
    AuthenticationError,
    InvalidRequestError,
    OverloadedError,
    RateLimitedError,
    ServerError,
)
from rxllm.events import DoneEvent, FinishReason, StreamEvent, TokenEvent, Usage
from rxllm.operators import Backoff, retry_on_interrupt, timeout
from rxllm.provider import Provider
from rxllm.request import StreamRequest

from .emulated import model, provider, run, text_of
from .stream_marbles import (
    PROMPT,
    MarbleStream,
    done,
    estimated,
    on_completed,
    on_error,
    on_next,
    subscribe,
    think,
    tok,
)

__all__ = ["provider"]  # the fixture, parametrized over the four providers

PROMPT_E2E = "Tell me about streams"
NO_JITTER = Backoff(initial=10, maximum=100, multiplier=2, jitter=0)


def attempts(*cold: ColdObservable[StreamEvent]) -> Observable[StreamEvent]:
    """A plain (non-LLMStream) source whose n-th subscription is the n-th cold observable."""
    queue = list(cold)
    return reactivex.defer(lambda _: queue.pop(0))


class ScriptedStream(MarbleStream):
    """An LLMStream whose ``continued`` hands out the next scripted attempt and records the call."""

    def __init__(
        self,
        script: list[ColdObservable[StreamEvent]],
        request: StreamRequest,
        calls: list[tuple[str, int]],
    ) -> None:
        super().__init__(script[0], request)
        self.script = script
        self.calls = calls

    def continued(
        self, partial: str, *, tokens_used: int = 0, token_events: int = 0
    ) -> ScriptedStream:
        self.calls.append((partial, tokens_used))
        return ScriptedStream(
            self.script[len(self.calls) :], self.request.continued(partial), self.calls
        )


def with_usage(event: StreamEvent, usage: Usage, **details: Any) -> StreamEvent:
    """The provider's ``done`` as retry_on_interrupt re-issues it: summed usage, more details."""
    assert isinstance(event, DoneEvent)
    return DoneEvent(
        usage=usage,
        finish_reason=event.finish_reason,
        model=event.model,
        provider=event.provider,
        details=details,
    )


def usage_of(event: StreamEvent) -> Usage:
    assert isinstance(event, DoneEvent)
    return event.usage


def test_an_error_before_any_token_waits_and_resubscribes() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_error(10, OverloadedError("busy")))
    second = scheduler.create_cold_observable(
        on_next(5, tok("Hi")), on_next(6, done(1)), on_completed(7)
    )
    results = scheduler.start(
        lambda: attempts(first, second).pipe(retry_on_interrupt(3, backoff=NO_JITTER))
    )
    # failed at 210, waited initial=10, so the second attempt starts at 220
    assert results.messages == [
        on_next(225, tok("Hi")),
        on_next(226, with_usage(done(1), usage_of(done(1)), attempts=2)),
        on_completed(227),
    ]
    assert first.subscriptions == [subscribe(200, 210)]
    assert second.subscriptions == [subscribe(220, 227)]


def test_waits_at_least_the_servers_retry_after() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_error(10, RateLimitedError("429", retry_after=300)))
    second = scheduler.create_cold_observable(on_next(1, done(0)), on_completed(1))
    results = scheduler.start(
        lambda: attempts(first, second).pipe(retry_on_interrupt(3, backoff=NO_JITTER)),
        disposed=2000,
    )
    assert second.subscriptions == [subscribe(510, 511)]
    assert results.messages[-1] == on_completed(511)


def test_backoff_grows_and_the_last_error_passes_through_after_max_attempts() -> None:
    scheduler = TestScheduler()
    cold = [scheduler.create_cold_observable(on_error(5, ServerError(f"#{i}"))) for i in range(3)]
    errors = [o.messages[0].value.exception for o in cold]  # type: ignore[union-attr]
    results = scheduler.start(
        lambda: attempts(*cold).pipe(retry_on_interrupt(3, backoff=NO_JITTER))
    )
    # 200-205 fails, wait 10; 215-220 fails, wait 20; 240-245 fails: no attempts left
    assert [o.subscriptions for o in cold] == [
        [subscribe(200, 205)],
        [subscribe(215, 220)],
        [subscribe(240, 245)],
    ]
    assert results.messages == [on_error(245, errors[2])]


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("bad key"),
        InvalidRequestError("bad request"),
        errors.TimeoutError("slow start", phase="first_token"),
        ValueError("a bug, not a provider failure"),
    ],
)
def test_non_retryable_errors_pass_straight_through(error: Exception) -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_error(10, error))
    second = scheduler.create_cold_observable(on_next(1, done()), on_completed(2))
    results = scheduler.start(lambda: attempts(first, second).pipe(retry_on_interrupt(3)))
    assert results.messages == [on_error(210, error)]
    assert second.subscriptions == []


def test_an_idle_timeout_is_retried() -> None:
    """What ``timeout`` emits on an idle expiry: its ``done`` (usage so far), then the error.

    That ``done`` is not the end of the reply: it is held back, the attempt is
    retried, and its usage is folded into the one final ``done``.
    """
    scheduler = TestScheduler()
    timed_out = estimated(FinishReason.TIMEOUT, tokens=1, prompt=3, timeout_phase="idle")
    first = scheduler.create_cold_observable(
        on_next(5, tok("He")),
        on_next(10, timed_out),
        on_error(10, errors.TimeoutError("quiet", phase="idle")),
    )
    second = scheduler.create_cold_observable(
        on_next(1, tok("He")), on_next(1, tok("llo")), on_next(2, done()), on_completed(2)
    )
    results = scheduler.start(lambda: attempts(first, second).pipe(retry_on_interrupt(2, 1)))
    assert results.messages == [
        on_next(205, tok("He")),
        on_next(212, tok("llo")),
        on_next(
            213,
            with_usage(
                done(), usage_of(timed_out) + usage_of(done()), attempts=2, usage_estimated=True
            ),
        ),
        on_completed(213),
    ]
    assert first.subscriptions == [subscribe(200, 210)]
    assert second.subscriptions == [subscribe(211, 213)]


def test_timeout_then_retry_is_one_seamless_stream_with_one_done() -> None:
    """The pipeline of the docs: ``timeout(idle=)`` before ``retry_on_interrupt``."""
    scheduler = TestScheduler()
    stalled = scheduler.create_cold_observable(on_next(10, tok("Hel")), on_next(20, tok("lo")))
    second = scheduler.create_cold_observable(
        on_next(10, tok("Hel")),
        on_next(20, tok("lo")),
        on_next(30, tok(" world")),
        on_next(40, done()),
        on_completed(40),
    )
    results = scheduler.start(
        lambda: attempts(stalled, second).pipe(timeout(idle=50), retry_on_interrupt(3, 5))
    )
    cut = estimated(FinishReason.TIMEOUT, tokens=2, timeout_phase="idle")
    assert results.messages == [
        on_next(210, tok("Hel")),
        on_next(220, tok("lo")),
        on_next(305, tok(" world")),
        on_next(
            315,
            with_usage(done(), usage_of(cut) + usage_of(done()), attempts=2, usage_estimated=True),
        ),
        on_completed(315),
    ]
    assert stalled.subscriptions == [subscribe(200, 270)]
    assert second.subscriptions == [subscribe(275, 315)]


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (FinishReason.TIMEOUT, errors.TimeoutError("slow start", phase="first_token")),
        (FinishReason.ERROR, ValueError("a trigger failed")),
    ],
)
def test_a_held_done_is_delivered_before_an_error_that_is_not_retried(
    reason: FinishReason, error: Exception
) -> None:
    scheduler = TestScheduler()
    ended = estimated(reason, tokens=1)
    first = scheduler.create_cold_observable(
        on_next(5, tok("a")), on_next(10, ended), on_error(10, error)
    )
    second = scheduler.create_cold_observable(on_next(1, done()), on_completed(2))
    results = scheduler.start(lambda: attempts(first, second).pipe(retry_on_interrupt(3, 1)))
    assert results.messages == [on_next(205, tok("a")), on_next(210, ended), on_error(210, error)]
    assert second.subscriptions == []


def test_a_held_done_is_delivered_with_the_last_error_after_max_attempts() -> None:
    scheduler = TestScheduler()
    idle = errors.TimeoutError("quiet", phase="idle")
    first = scheduler.create_cold_observable(
        on_next(5, tok("a")),
        on_next(10, estimated(FinishReason.TIMEOUT, tokens=1)),
        on_error(10, idle),
    )
    second = scheduler.create_cold_observable(
        on_next(5, tok("a")),
        on_next(10, tok("b")),
        on_next(20, estimated(FinishReason.TIMEOUT, tokens=2)),
        on_error(20, idle),
    )
    results = scheduler.start(lambda: attempts(first, second).pipe(retry_on_interrupt(2, 1)))
    assert results.messages == [
        on_next(205, tok("a")),
        on_next(221, tok("b")),
        on_next(
            231,
            with_usage(
                estimated(FinishReason.TIMEOUT),
                Usage(completion_tokens=3),
                attempts=2,
                usage_estimated=True,
            ),
        ),
        on_error(231, idle),
    ]


@pytest.mark.parametrize("reason", [FinishReason.TOKEN_LIMIT, FinishReason.CANCELLED])
def test_token_limit_and_cancelled_dones_are_final_and_pass_at_once(
    reason: FinishReason,
) -> None:
    scheduler = TestScheduler()
    late = errors.StreamInterruptedError("closed uncleanly after the end")
    ended = estimated(reason, tokens=1)
    first = scheduler.create_cold_observable(
        on_next(5, tok("a")), on_next(10, ended), on_error(30, late)
    )
    second = scheduler.create_cold_observable(on_next(1, done()), on_completed(2))
    results = scheduler.start(lambda: attempts(first, second).pipe(retry_on_interrupt(3, 1)))
    assert results.messages == [on_next(205, tok("a")), on_next(210, ended), on_error(230, late)]
    assert second.subscriptions == []


def test_a_timeout_done_followed_by_completion_is_delivered() -> None:
    scheduler = TestScheduler()
    ended = estimated(FinishReason.TIMEOUT, tokens=1)
    first = scheduler.create_cold_observable(
        on_next(5, tok("a")), on_next(10, ended), on_completed(10)
    )
    results = scheduler.start(lambda: attempts(first).pipe(retry_on_interrupt(3, 1)))
    assert results.messages == [on_next(205, tok("a")), on_next(210, ended), on_completed(210)]


def test_an_llm_stream_cut_after_tokens_resumes_from_the_partial_text() -> None:
    scheduler = TestScheduler()
    cut = errors.StreamInterruptedError("connection dropped")
    script = [
        scheduler.create_cold_observable(
            on_next(10, think("plan")),
            on_next(20, tok("Hel")),
            on_next(30, tok("lo")),
            on_error(40, cut),
        ),
        scheduler.create_cold_observable(
            on_next(5, think("again")),  # the continuation's reasoning: dropped
            on_next(10, tok(" wor")),
            on_next(20, tok("ld")),
            on_next(30, done(2)),
            on_completed(30),
        ),
    ]
    calls: list[tuple[str, int]] = []
    stream = ScriptedStream(script, StreamRequest(model="marble-1", prompt=PROMPT), calls)
    results = scheduler.start(lambda: stream.pipe(retry_on_interrupt(2, backoff=NO_JITTER)))

    # the first attempt delivered 3 events: prompt 10 (estimated) + 3 completion, 1 reasoning
    first_usage = Usage(prompt_tokens=10, completion_tokens=3, reasoning_tokens=1)
    assert results.messages == [
        on_next(210, think("plan")),
        on_next(220, tok("Hel")),
        on_next(230, tok("lo")),
        on_next(260, tok(" wor")),
        on_next(270, tok("ld")),
        on_next(
            280,
            with_usage(done(2), first_usage + usage_of(done(2)), attempts=2, usage_estimated=True),
        ),
        on_completed(280),
    ]
    assert calls == [("Hello", 3)]
    assert script[0].subscriptions == [subscribe(200, 240)]
    assert script[1].subscriptions == [subscribe(250, 280)]


def test_continuations_always_extend_the_original_request_with_all_text_so_far() -> None:
    scheduler = TestScheduler()
    script = [
        scheduler.create_cold_observable(
            on_next(1, tok("a")), on_error(2, errors.StreamInterruptedError("x"))
        ),
        scheduler.create_cold_observable(
            on_next(1, tok("b")), on_error(2, errors.StreamInterruptedError("y"))
        ),
        scheduler.create_cold_observable(on_next(1, tok("c")), on_next(2, done()), on_completed(2)),
    ]
    calls: list[tuple[str, int]] = []
    stream = ScriptedStream(script, StreamRequest(model="marble-1", prompt=PROMPT), calls)
    results = scheduler.start(lambda: stream.pipe(retry_on_interrupt(3, backoff=0)))
    assert calls == [("a", 1), ("ab", 2)]
    assert "".join(m.value.value.text for m in results.messages[:3]) == "abc"  # type: ignore[union-attr]
    assert [o.subscriptions for o in script] == [
        [subscribe(200, 202)],
        [subscribe(202, 204)],
        [subscribe(204, 206)],
    ]


def test_a_plain_source_restarted_after_tokens_skips_the_text_already_delivered() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(
        on_next(10, tok("Hel")),
        on_next(20, tok("lo")),
        on_error(30, errors.StreamInterruptedError("cut")),
    )
    second = scheduler.create_cold_observable(
        on_next(10, tok("He")),
        on_next(20, tok("llo wor")),
        on_next(30, tok("ld")),
        on_next(40, done()),
        on_completed(40),
    )
    results = scheduler.start(
        lambda: attempts(first, second).pipe(retry_on_interrupt(2, backoff=NO_JITTER))
    )
    assert results.messages == [
        on_next(210, tok("Hel")),
        on_next(220, tok("lo")),
        on_next(260, tok(" wor")),
        on_next(270, tok("ld")),
        on_next(
            280,
            with_usage(
                done(),
                Usage(completion_tokens=2) + usage_of(done()),
                attempts=2,
                usage_estimated=True,
            ),
        ),
        on_completed(280),
    ]
    assert second.subscriptions == [subscribe(240, 280)]


def test_a_plain_source_that_diverges_on_restart_raises_the_original_error() -> None:
    scheduler = TestScheduler()
    cut = errors.StreamInterruptedError("cut")
    first = scheduler.create_cold_observable(on_next(10, tok("Hello")), on_error(20, cut))
    second = scheduler.create_cold_observable(
        on_next(10, tok("Hi")), on_next(20, tok(" there")), on_completed(30)
    )
    results = scheduler.start(
        lambda: attempts(first, second).pipe(retry_on_interrupt(2, backoff=NO_JITTER))
    )
    assert results.messages == [on_next(210, tok("Hello")), on_error(240, cut)]
    assert second.subscriptions == [subscribe(230, 240)]


def test_a_plain_source_that_ends_short_of_the_delivered_text_raises_the_original_error() -> None:
    scheduler = TestScheduler()
    cut = errors.StreamInterruptedError("cut")
    first = scheduler.create_cold_observable(on_next(10, tok("Hello")), on_error(20, cut))
    second = scheduler.create_cold_observable(
        on_next(10, tok("Hel")), on_next(20, done()), on_completed(30)
    )
    results = scheduler.start(
        lambda: attempts(first, second).pipe(retry_on_interrupt(2, backoff=NO_JITTER))
    )
    assert results.messages == [on_next(210, tok("Hello")), on_error(250, cut)]
    assert second.subscriptions == [subscribe(230, 250)]


def test_a_plain_source_completing_short_of_the_text_raises_the_original_error() -> None:
    scheduler = TestScheduler()
    cut = errors.StreamInterruptedError("cut")
    first = scheduler.create_cold_observable(on_next(10, tok("Hello")), on_error(20, cut))
    second = scheduler.create_cold_observable(on_next(10, tok("Hel")), on_completed(20))
    results = scheduler.start(
        lambda: attempts(first, second).pipe(retry_on_interrupt(2, backoff=NO_JITTER))
    )
    assert results.messages == [on_next(210, tok("Hello")), on_error(250, cut)]
    assert second.subscriptions == [subscribe(230, 250)]


def test_an_error_after_the_done_is_not_retried() -> None:
    scheduler = TestScheduler()
    late = errors.StreamInterruptedError("closed uncleanly after the end")
    first = scheduler.create_cold_observable(
        on_next(10, tok("a")), on_next(20, done()), on_error(30, late)
    )
    second = scheduler.create_cold_observable(on_next(1, done()), on_completed(1))
    results = scheduler.start(lambda: attempts(first, second).pipe(retry_on_interrupt(3)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(220, done()),
        on_error(230, late),
    ]
    assert second.subscriptions == []


def test_disposing_while_waiting_cancels_the_retry() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_error(10, RateLimitedError("429", retry_after=500)))
    second = scheduler.create_cold_observable(on_next(1, done()), on_completed(2))
    results = scheduler.start(
        lambda: attempts(first, second).pipe(retry_on_interrupt(3)), disposed=400
    )
    assert results.messages == []
    assert first.subscriptions == [subscribe(200, 210)]
    assert second.subscriptions == []


def test_disposing_mid_attempt_disposes_the_source() -> None:
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_next(10, tok("a")), on_next(500, done()))
    results = scheduler.start(lambda: attempts(first).pipe(retry_on_interrupt(3)), disposed=300)
    assert results.messages == [on_next(210, tok("a"))]
    assert first.subscriptions == [subscribe(200, 300)]


def test_a_single_successful_attempt_passes_its_done_unchanged() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(
        on_next(10, tok("a")), on_next(20, done()), on_completed(20)
    )
    results = scheduler.start(lambda: source.pipe(retry_on_interrupt()))
    assert results.messages == [on_next(210, tok("a")), on_next(220, done()), on_completed(220)]
    assert source.subscriptions == [subscribe(200, 220)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"backoff": -1}, "backoff"),
        ({"backoff": float("nan")}, "backoff"),
        ({"backoff": "1s"}, "backoff"),
    ],
)
def test_bad_arguments_fail_when_the_operator_is_built(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retry_on_interrupt(**args)


@pytest.mark.parametrize(
    "fields",
    [
        {"initial": -1},
        {"initial": 10, "maximum": 5},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"jitter": float("nan")},
    ],
)
def test_bad_backoff_fails_when_built(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**fields)


def test_backoff_is_exponential_capped_jittered_and_never_below_retry_after() -> None:
    plain = Backoff(initial=1, maximum=5, multiplier=2, jitter=0)
    assert [plain.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert plain.delay(1, retry_after=8) == 8
    jittered = Backoff(initial=4, maximum=4, multiplier=1, jitter=0.5)
    rng = random.Random(7)
    waits = [jittered.delay(1, rng=rng) for _ in range(200)]
    assert all(2 <= w <= 4 for w in waits)
    assert len(set(waits)) > 100
    assert all(jittered.delay(1, retry_after=3.5, rng=rng) >= 3.5 for _ in range(50))


# -- end to end, on each provider against the emulator ------------------------------------

FAST = Backoff(initial=0.05, maximum=0.05, jitter=0)


@pytest.mark.parametrize("fault", ["drop", "truncate"])
async def test_a_stream_cut_mid_reply_resumes_to_exactly_the_uninterrupted_text(
    provider: Provider[Any], emulator: Emulator, fault: str
) -> None:
    name = provider.name
    reference, error = await run(provider.stream(PROMPT_E2E, model=model(name)))
    assert error is None
    emulator.reset()

    cut = provider.stream(PROMPT_E2E, model=model(name, fault=fault, after=4, times=1))
    events, error = await run(cut.pipe(retry_on_interrupt(3, backoff=FAST)))

    assert error is None
    assert text_of(events) == text_of(reference)
    assert len(text_of(reference)) > 40  # a real reply, cut well before its end
    first, second = emulator.requests
    assert first.fault == fault
    assert second.fault is None
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert [e for e in events if isinstance(e, DoneEvent)] == [final]
    assert final.provider == name
    assert final.details["attempts"] == 2
    assert final.details["usage_estimated"] is True
    # the second attempt's real usage, plus at least the 4 events of the cut one
    reference_done = reference[-1]
    assert isinstance(reference_done, DoneEvent)
    assert final.usage.completion_tokens >= reference_done.usage.completion_tokens


async def test_an_idle_timeout_before_retry_resumes_to_exactly_the_uninterrupted_text(
    provider: Provider[Any], emulator: Emulator
) -> None:
    name = provider.name
    reference, error = await run(provider.stream(PROMPT_E2E, model=model(name)))
    assert error is None
    emulator.reset()

    stalls = provider.stream(PROMPT_E2E, model=model(name, fault="stall", after=3, times=1))
    events, error = await run(stalls.pipe(timeout(idle=0.3), retry_on_interrupt(3, backoff=FAST)))

    assert error is None
    assert text_of(events) == text_of(reference)
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert [e for e in events if isinstance(e, DoneEvent)] == [final]
    assert final.finish_reason == FinishReason.STOP
    assert final.provider == name
    assert final.details["attempts"] == 2
    assert final.details["usage_estimated"] is True
    # the timed-out attempt's usage so far plus the continuation's: nothing generated twice
    reference_done = reference[-1]
    assert isinstance(reference_done, DoneEvent)
    assert final.usage.completion_tokens == reference_done.usage.completion_tokens
    [stalled] = await emulator.wait_for_disconnects_async(1)
    first, second = emulator.requests
    # timeout() kept the stream resumable: the second request continues the cut reply
    delivered = "".join(e.text for e in reference if isinstance(e, TokenEvent))
    partial = "".join([e.text for e in reference if isinstance(e, TokenEvent)][:3])
    assert partial in json.dumps(second.body, ensure_ascii=False)
    assert delivered not in json.dumps(second.body, ensure_ascii=False)
    assert stalled is first
    assert first.fault == "stall"
    assert first.disconnected
    assert not first.completed
    assert second.fault is None
    assert second.completed


async def test_a_429_is_retried_no_sooner_than_its_retry_after(
    provider: Provider[Any], emulator: Emulator
) -> None:
    limited = provider.stream(
        PROMPT_E2E, model=model(provider.name, fault="rate_limited", retry_after=1, times=1)
    )
    events, error = await run(limited.pipe(retry_on_interrupt(3, backoff=FAST)))
    assert error is None
    assert isinstance(events[-1], DoneEvent)
    first, second = emulator.requests
    assert first.fault == "rate_limited"
    assert second.fault is None
    assert second.started - first.started >= 1.0


async def test_an_authentication_error_is_not_retried(
    provider: Provider[Any], emulator: Emulator
) -> None:
    refused = provider.stream(PROMPT_E2E, model=model(provider.name, fault="invalid_key"))
    events, error = await run(refused.pipe(retry_on_interrupt(3, backoff=FAST)))
    assert isinstance(error, AuthenticationError)
    assert events == []
    assert len(emulator.requests) == 1

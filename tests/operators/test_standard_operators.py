"""Standard ReactiveX operators on an LLMStream: it stays an LLMStream, so it stays resumable.

One marble test per ordering rule documented in ``rxllm.operators``, and the two
reproductions of issue 11 end to end against the emulator.
"""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.testing import TestScheduler
from reactivex.testing.coldobservable import ColdObservable

from rxllm import DoneEvent, ErrorEvent, FinishReason, LLMStream, StreamEvent, TokenEvent, errors
from rxllm.emulator import Emulator
from rxllm.events import ReasoningEvent
from rxllm.operators import (
    Backoff,
    cancel_when,
    errors_as_events,
    retry_on_interrupt,
    take_tokens,
    timeout,
)
from rxllm.request import StreamRequest
from rxllm.stream import NotResumableWarning, operator_name

from .emulated import build, model, run, text_of
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

NO_WAIT = Backoff(initial=10, maximum=10, jitter=0)
CUT = errors.StreamInterruptedError("connection dropped")


class ScriptedStream(MarbleStream):
    """An LLMStream whose ``continued`` hands out the next scripted attempt and records it."""

    def __init__(
        self, script: list[ColdObservable[StreamEvent]], calls: list[str], request: StreamRequest
    ) -> None:
        super().__init__(script[0], request)
        self.script = script
        self.calls = calls

    def continued(
        self, partial: str, *, tokens_used: int = 0, token_events: int = 0
    ) -> ScriptedStream:
        self.calls.append(partial)
        return ScriptedStream(
            self.script[len(self.calls) :], self.calls, self.request.continued(partial)
        )


def scripted(*attempts: ColdObservable[StreamEvent]) -> tuple[ScriptedStream, list[str]]:
    calls: list[str] = []
    return ScriptedStream(
        list(attempts), calls, StreamRequest(model="marble-1", prompt=PROMPT)
    ), calls


class ReplayedStream(MarbleStream):
    """An LLMStream whose n-th subscription is the n-th cold observable (a replayed request)."""

    def __init__(self, *attempts: ColdObservable[StreamEvent]) -> None:
        queue = list(attempts)
        super().__init__(
            reactivex.defer(lambda _: queue.pop(0)), StreamRequest(model="marble-1", prompt=PROMPT)
        )


# -- rule 1: a standard operator before retry_on_interrupt keeps the stream resumable -----


def test_pipe_keeps_an_llm_stream_an_llm_stream() -> None:
    stream = ReplayedStream()
    piped = stream.pipe(ops.do_action(print), ops.filter(bool), take_tokens(3))
    assert isinstance(piped, LLMStream)
    assert (piped.provider, piped.request) == (stream.provider, stream.request)


def test_a_standard_operator_before_retry_is_reapplied_to_the_continuation() -> None:
    scheduler = TestScheduler()
    stream, calls = scripted(
        scheduler.create_cold_observable(
            on_next(10, think("plan")), on_next(20, tok("Hel")), on_error(30, CUT)
        ),
        scheduler.create_cold_observable(
            on_next(10, think("again")), on_next(20, tok("lo")), on_next(30, done(2))
        ),
    )
    no_reasoning = ops.filter(lambda e: not isinstance(e, ReasoningEvent))
    results = scheduler.start(
        lambda: stream.pipe(no_reasoning, retry_on_interrupt(2, backoff=NO_WAIT))
    )
    assert [m.value.value for m in results.messages if m.value.kind == "N"][:2] == [
        tok("Hel"),
        tok("lo"),
    ]
    assert calls == ["Hel"]  # continued, not replayed
    assert [(m.time, m.value.kind) for m in results.messages] == [
        (220, "N"),
        (260, "N"),
        (270, "N"),
    ]
    assert stream.script[0].subscriptions == [subscribe(200, 230)]
    assert stream.script[1].subscriptions == [subscribe(240, 1000)]


# -- rule 2: an operator that changes the event type goes after retry_on_interrupt --------


def test_a_type_changing_operator_before_retry_replays_and_says_so_once() -> None:
    scheduler = TestScheduler()
    stream = ReplayedStream(
        scheduler.create_cold_observable(on_next(10, tok("Hel")), on_error(20, CUT)),
        scheduler.create_cold_observable(on_next(10, tok("Hel")), on_error(20, CUT)),
        scheduler.create_cold_observable(
            on_next(10, tok("Hel")), on_next(20, tok("lo")), on_completed(30)
        ),
    )
    as_text = ops.map(lambda e: e.text if isinstance(e, TokenEvent) else "")
    with pytest.warns(NotResumableWarning, match=r"ops\.map") as warned:
        results = scheduler.start(
            lambda: stream.pipe(as_text, retry_on_interrupt(3, backoff=NO_WAIT))
        )
    assert len(warned) == 1
    # replayed from the start: "Hel" is delivered once per attempt
    assert results.messages == [
        on_next(210, "Hel"),
        on_next(240, "Hel"),
        on_next(270, "Hel"),
        on_next(280, "lo"),
        on_completed(290),
    ]


def test_a_type_changing_operator_after_retry_is_resumed_without_warning() -> None:
    scheduler = TestScheduler()
    stream, calls = scripted(
        scheduler.create_cold_observable(on_next(10, tok("Hel")), on_error(20, CUT)),
        scheduler.create_cold_observable(on_next(10, tok("lo")), on_completed(20)),
    )
    as_text = ops.map(lambda e: e.text if isinstance(e, TokenEvent) else "")
    results = scheduler.start(lambda: stream.pipe(retry_on_interrupt(2, backoff=NO_WAIT), as_text))
    assert results.messages == [on_next(210, "Hel"), on_next(240, "lo"), on_completed(250)]
    assert calls == ["Hel"]


# -- rule 3: before retry_on_interrupt, a standard operator sees each attempt on its own ---


def test_a_counting_operator_before_retry_counts_per_attempt_take_tokens_over_the_reply() -> None:
    def run_with(*operators: Any) -> list[Any]:
        scheduler = TestScheduler()
        stream, _ = scripted(
            scheduler.create_cold_observable(on_next(10, tok("a")), on_error(20, CUT)),
            scheduler.create_cold_observable(
                on_next(10, tok("b")), on_next(20, tok("c")), on_next(30, tok("d"))
            ),
        )
        results = scheduler.start(lambda: stream.pipe(*operators))
        return [m.value.value for m in results.messages if m.value.kind == "N"]

    retry = retry_on_interrupt(2, backoff=NO_WAIT)
    per_attempt = run_with(ops.take(3), retry)
    assert per_attempt == [tok("a"), tok("b"), tok("c"), tok("d")]  # 1 + 3
    budget = run_with(take_tokens(3), retry_on_interrupt(2, backoff=NO_WAIT))
    assert budget[:3] == [tok("a"), tok("b"), tok("c")]
    assert isinstance(budget[3], DoneEvent)
    assert budget[3].finish_reason == FinishReason.TOKEN_LIMIT
    assert len(budget) == 4


# -- rule 4: errors_as_events goes last ----------------------------------------------------


def test_errors_as_events_before_retry_hides_the_error_from_it() -> None:
    scheduler = TestScheduler()
    stream, calls = scripted(
        scheduler.create_cold_observable(on_next(10, tok("a")), on_error(20, CUT)),
        scheduler.create_cold_observable(on_next(10, tok("b")), on_completed(20)),
    )
    results = scheduler.start(
        lambda: stream.pipe(errors_as_events(), retry_on_interrupt(2, backoff=NO_WAIT))
    )
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(220, ErrorEvent(CUT)),
        on_completed(220),
    ]
    assert calls == []  # never retried


def test_errors_as_events_after_retry_sees_only_the_last_error() -> None:
    scheduler = TestScheduler()
    stream, calls = scripted(
        scheduler.create_cold_observable(on_next(10, tok("a")), on_error(20, CUT)),
        scheduler.create_cold_observable(on_next(10, tok("b")), on_error(20, CUT)),
    )
    results = scheduler.start(
        lambda: stream.pipe(retry_on_interrupt(2, backoff=NO_WAIT), errors_as_events())
    )
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(240, tok("b")),
        on_next(250, ErrorEvent(CUT)),
        on_completed(250),
    ]
    assert calls == ["a"]


def test_errors_as_events_is_rxpy_catch() -> None:
    assert operator_name(errors_as_events()) == "ops.catch"


# -- rule 5: an operator that ends early reports the stream it ended, whatever came before --


def test_take_tokens_after_a_standard_operator_keeps_provider_model_and_prompt() -> None:
    scheduler = TestScheduler()
    events = scheduler.create_cold_observable(
        on_next(10, tok("a")), on_next(20, tok("b")), on_next(30, done()), on_completed(40)
    )
    stream = MarbleStream(events, StreamRequest(model="marble-7", prompt=PROMPT))
    results = scheduler.start(lambda: stream.pipe(ops.do_action(lambda _: None), take_tokens(1)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(
            210,
            estimated(
                FinishReason.TOKEN_LIMIT, tokens=1, prompt=10, model="marble-7", provider="marble"
            ),
        ),
        on_completed(210),
    ]
    assert events.subscriptions == [subscribe(200, 210)]


def test_timeout_and_cancel_when_after_a_standard_operator_keep_the_identity() -> None:
    scheduler = TestScheduler()
    events = scheduler.create_cold_observable(on_next(10, tok("a")), on_next(100, tok("b")))
    stream = MarbleStream(events, StreamRequest(model="marble-7", prompt=PROMPT))
    stop = scheduler.create_hot_observable(on_next(220, "stop"))
    results = scheduler.start(
        lambda: stream.pipe(ops.do_action(lambda _: None), cancel_when(stop), timeout(idle=50))
    )
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(
            220,
            estimated(
                FinishReason.CANCELLED, tokens=1, prompt=10, model="marble-7", provider="marble"
            ),
        ),
        on_completed(220),
    ]
    scheduler = TestScheduler()
    events = scheduler.create_cold_observable(on_next(10, tok("a")), on_next(100, tok("b")))
    stream = MarbleStream(events, StreamRequest(model="marble-7", prompt=PROMPT))
    results = scheduler.start(lambda: stream.pipe(ops.filter(bool), timeout(idle=50)))
    [_first, cut, failed] = results.messages
    assert cut.value.value == estimated(
        FinishReason.TIMEOUT,
        tokens=1,
        prompt=10,
        model="marble-7",
        provider="marble",
        timeout_phase="idle",
    )
    assert failed.value.kind == "E"


def test_take_tokens_after_retry_keeps_provider_model_and_prompt() -> None:
    scheduler = TestScheduler()
    stream, calls = scripted(
        scheduler.create_cold_observable(on_next(10, tok("a")), on_error(20, CUT)),
        scheduler.create_cold_observable(on_next(10, tok("b")), on_next(20, tok("c"))),
    )
    results = scheduler.start(
        lambda: stream.pipe(retry_on_interrupt(2, backoff=NO_WAIT), take_tokens(2))
    )
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(240, tok("b")),
        on_next(
            240,
            estimated(
                FinishReason.TOKEN_LIMIT, tokens=2, prompt=10, model="marble-1", provider="marble"
            ),
        ),
        on_completed(240),
    ]
    assert calls == ["a"]


# -- end to end: the two reproductions of issue 11 ----------------------------------------


async def test_do_action_and_filter_before_retry_resume_the_cut_reply(emulator: Emulator) -> None:
    provider = build("anthropic", emulator)
    try:
        reference, error = await run(
            provider.stream("Tell me about streams", model=model("anthropic"))
        )
        assert error is None
        emulator.reset()
        seen: list[StreamEvent] = []
        cut = provider.stream(
            "Tell me about streams", model=model("anthropic", fault="drop", after=4, times=1)
        )
        events, error = await run(
            cut.pipe(
                ops.do_action(seen.append),
                ops.filter(lambda e: not isinstance(e, ReasoningEvent)),
                retry_on_interrupt(3, backoff=Backoff(initial=0.05, maximum=0.05, jitter=0)),
            )
        )
    finally:
        await provider.aclose()
    assert error is None
    assert text_of(events) == text_of(reference)
    first, second = emulator.requests
    assert [m["role"] for m in first.body["messages"]] == ["user"]
    assert [m["role"] for m in second.body["messages"]] == ["user", "assistant"]
    assert seen  # do_action saw both attempts' events


async def test_take_tokens_after_a_standard_operator_reports_provider_model_prompt_and_cost(
    emulator: Emulator,
) -> None:
    provider = build("anthropic", emulator)
    try:
        stream = provider.stream("Tell me a story", model=model("anthropic", tps=20, words=200))
        events, error = await run(
            stream.pipe(ops.filter(lambda e: not isinstance(e, ReasoningEvent)), take_tokens(3))
        )
    finally:
        await provider.aclose()
    assert error is None
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert final.finish_reason == FinishReason.TOKEN_LIMIT
    assert (final.provider, final.model) == ("anthropic", stream.request.model)
    assert final.usage.prompt_tokens > 0
    assert final.usage.cost is not None
    assert final.usage.cost > 0
    assert final.details["usage_estimated"] is True

"""cancel_when: the first item of any trigger stops the stream with a cancelled done."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from reactivex import operators as ops
from reactivex.subject import BehaviorSubject, Subject
from reactivex.testing import TestScheduler

from rxllm import DoneEvent, FinishReason, Provider, StreamEvent, TokenEvent
from rxllm.emulator import Emulator
from rxllm.operators import cancel_when

from .emulated import model, provider, run
from .stream_marbles import (
    done,
    estimated,
    marble_stream,
    on_completed,
    on_error,
    on_next,
    subscribe,
    tok,
)

__all__ = ["provider"]  # the fixture, parametrized over the four providers

CANCELLED = FinishReason.CANCELLED


def test_a_trigger_stops_the_stream_and_everything_is_disposed() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(240, tok("c")),
        on_next(250, done()),
        on_completed(260),
    )
    stop = scheduler.create_hot_observable(on_next(230, "stop"), on_completed(500))
    results = scheduler.start(lambda: source.pipe(cancel_when(stop)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(230, estimated(CANCELLED, tokens=2)),
        on_completed(230),
    ]
    assert source.subscriptions == [subscribe(200, 230)]
    assert stop.subscriptions == [subscribe(200, 230)]


def test_the_first_of_several_triggers_wins_and_all_are_disposed() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, tok("a")), on_next(260, tok("b")))
    button = scheduler.create_hot_observable(on_next(300, "click"))
    deadline = scheduler.create_hot_observable(on_next(250, 0))
    results = scheduler.start(lambda: source.pipe(cancel_when(button, deadline)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(250, estimated(CANCELLED, tokens=1)),
        on_completed(250),
    ]
    assert source.subscriptions == [subscribe(200, 250)]
    assert button.subscriptions == [subscribe(200, 250)]
    assert deadline.subscriptions == [subscribe(200, 250)]


def test_a_trigger_already_fired_stops_before_any_request_is_made() -> None:
    scheduler = TestScheduler()
    events = scheduler.create_cold_observable(on_next(10, tok("a")), on_completed(20))
    stream = marble_stream(events)
    pressed = BehaviorSubject("stop")  # the button was pressed before subscribing
    results = scheduler.start(lambda: stream.pipe(cancel_when(pressed)))
    assert results.messages == [
        on_next(200, estimated(CANCELLED, model="marble-1", provider="marble")),
        on_completed(200),
    ]
    assert events.subscriptions == []


def test_on_a_provider_stream_the_done_names_it_and_counts_the_prompt() -> None:
    scheduler = TestScheduler()
    events = scheduler.create_cold_observable(on_next(10, tok("a")), on_next(50, tok("b")))
    stream = marble_stream(events, model="marble-3")
    stop = scheduler.create_hot_observable(on_next(220, None))
    results = scheduler.start(lambda: stream.pipe(cancel_when(stop)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(
            220, estimated(CANCELLED, tokens=1, prompt=10, model="marble-3", provider="marble")
        ),
        on_completed(220),
    ]
    assert events.subscriptions == [subscribe(200, 220)]


def test_a_trigger_that_completes_without_emitting_is_ignored() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(240, done()), on_completed(250)
    )
    quiet = scheduler.create_hot_observable(on_completed(220))
    results = scheduler.start(lambda: source.pipe(cancel_when(quiet)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(240, done()),
        on_completed(250),
    ]
    assert source.subscriptions == [subscribe(200, 250)]
    assert quiet.subscriptions == [subscribe(200, 220)]


def test_the_end_of_the_source_disposes_the_triggers() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(240, done()), on_completed(250)
    )
    stop = scheduler.create_hot_observable(on_next(400, None))
    results = scheduler.start(lambda: source.pipe(cancel_when(stop)))
    assert results.messages == [on_next(210, tok("a")), on_next(240, done()), on_completed(250)]
    assert stop.subscriptions == [subscribe(200, 250)]

    scheduler = TestScheduler()
    error = RuntimeError("boom")
    source = scheduler.create_hot_observable(on_next(210, tok("a")), on_error(230, error))
    stop = scheduler.create_hot_observable(on_next(400, None))
    results = scheduler.start(lambda: source.pipe(cancel_when(stop)))
    assert results.messages == [on_next(210, tok("a")), on_error(230, error)]
    assert stop.subscriptions == [subscribe(200, 230)]


def test_after_the_sources_own_done_a_trigger_adds_no_second_done() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(220, done()), on_completed(300)
    )
    stop = scheduler.create_hot_observable(on_next(230, None))
    results = scheduler.start(lambda: source.pipe(cancel_when(stop)))
    assert results.messages == [on_next(210, tok("a")), on_next(220, done()), on_completed(230)]
    assert source.subscriptions == [subscribe(200, 230)]


def test_a_failing_trigger_ends_the_stream_with_a_done_and_its_error() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, tok("a")), on_next(260, tok("b")))
    error = RuntimeError("the other lane failed")
    trigger = scheduler.create_hot_observable(on_error(230, error))
    results = scheduler.start(lambda: source.pipe(cancel_when(trigger)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(230, estimated(FinishReason.ERROR, tokens=1)),
        on_error(230, error),
    ]
    assert source.subscriptions == [subscribe(200, 230)]
    assert trigger.subscriptions == [subscribe(200, 230)]


def test_bad_triggers_are_refused_when_the_operator_is_built() -> None:
    with pytest.raises(ValueError, match="at least one trigger"):
        cancel_when()
    with pytest.raises(ValueError, match="must be observables"):
        cancel_when(5)  # type: ignore[arg-type]


# -- end to end, on each provider against the emulator ------------------------------------


async def test_a_stop_button_closes_the_connection(
    provider: Provider[Any], emulator: Emulator
) -> None:
    stream = provider.stream("Tell me a story", model=model(provider.name, tps=20, words=200))
    stop: Subject[None] = Subject()
    loop = asyncio.get_running_loop()
    seen = 0

    def press_stop_after_two_tokens(event: StreamEvent) -> None:
        # A button press arrives later on the loop, not inside the consumer's callback.
        nonlocal seen
        if isinstance(event, TokenEvent):
            seen += 1
            if seen == 2:
                loop.call_soon(stop.on_next, None)

    events, error = await run(
        stream.pipe(cancel_when(stop), ops.do_action(press_stop_after_two_tokens))
    )
    assert error is None
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) >= 2
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert [e for e in events if isinstance(e, DoneEvent)] == [final]
    assert final.finish_reason == FinishReason.CANCELLED
    assert (final.provider, final.model) == (provider.name, stream.request.model)
    assert final.usage.completion_tokens == len(tokens)
    assert final.usage.prompt_tokens > 0
    assert not stop.observers  # the trigger's subscription was disposed
    [request] = await emulator.wait_for_disconnects_async(1)
    assert not request.completed
    assert len(emulator.requests) == 1

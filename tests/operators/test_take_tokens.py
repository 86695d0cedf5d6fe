"""take_tokens: n tokens, then a done for what was used, and the source disposed at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import reactivex
from reactivex.testing import TestScheduler

from rxllm import DoneEvent, FinishReason, Provider, StreamEvent, TokenEvent
from rxllm.emulator import Emulator
from rxllm.operators import take_tokens

from .emulated import model, provider, run
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

LIMIT = FinishReason.TOKEN_LIMIT


def test_ends_after_n_tokens_and_disposes_the_source_at_once() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(230, tok("c")),
        on_next(240, done()),
        on_completed(250),
    )
    results = scheduler.start(lambda: source.pipe(take_tokens(2)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(220, tok("b")),
        on_next(220, estimated(LIMIT, tokens=2)),
        on_completed(220),
    ]
    assert source.subscriptions == [subscribe(200, 220)]


def test_reasoning_counts_towards_usage_not_towards_n() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, think("hmm")),
        on_next(220, think("so")),
        on_next(230, tok("a")),
        on_next(240, tok("b")),
    )
    results = scheduler.start(lambda: source.pipe(take_tokens(1)))
    assert results.messages == [
        on_next(210, think("hmm")),
        on_next(220, think("so")),
        on_next(230, tok("a")),
        on_next(230, estimated(LIMIT, tokens=1, reasoning=2)),
        on_completed(230),
    ]
    assert source.subscriptions == [subscribe(200, 230)]


def test_a_provider_stream_keeps_its_provider_and_model_and_estimates_the_prompt() -> None:
    scheduler = TestScheduler()
    events = scheduler.create_cold_observable(
        on_next(10, tok("a")), on_next(20, tok("b")), on_next(30, done()), on_completed(40)
    )
    stream = marble_stream(events, model="marble-7")
    results = scheduler.start(lambda: stream.pipe(take_tokens(1)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(
            210,
            estimated(LIMIT, tokens=1, prompt=10, model="marble-7", provider="marble"),
        ),
        on_completed(210),
    ]
    assert events.subscriptions == [subscribe(200, 210)]


def test_a_shorter_stream_passes_through_with_its_own_done() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, tok("a")), on_next(230, done()), on_completed(240)
    )
    results = scheduler.start(lambda: source.pipe(take_tokens(5)))
    assert results.messages == [
        on_next(210, tok("a")),
        on_next(230, done()),
        on_completed(240),
    ]
    assert source.subscriptions == [subscribe(200, 240)]


def test_an_error_before_n_tokens_passes_through() -> None:
    scheduler = TestScheduler()
    error = RuntimeError("cut")
    source = scheduler.create_hot_observable(on_next(210, tok("a")), on_error(220, error))
    results = scheduler.start(lambda: source.pipe(take_tokens(5)))
    assert results.messages == [on_next(210, tok("a")), on_error(220, error)]
    assert source.subscriptions == [subscribe(200, 220)]


def test_a_synchronous_source_is_stopped_inside_subscribe() -> None:
    pulled: list[int] = []

    def numbers() -> reactivex.Observable[StreamEvent]:
        def gen() -> Iterator[StreamEvent]:
            for i in range(1000):
                pulled.append(i)
                yield tok(str(i))

        return reactivex.from_iterable(gen())

    events: list[StreamEvent] = []
    numbers().pipe(take_tokens(3)).subscribe(events.append)
    assert [getattr(e, "text", None) for e in events[:3]] == ["0", "1", "2"]
    assert events[3] == estimated(LIMIT, tokens=3)
    assert len(pulled) == 3


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "3", None])
def test_bad_n_is_refused_when_the_operator_is_built(n: object) -> None:
    with pytest.raises(ValueError, match=r"take_tokens\(n\)"):
        take_tokens(n)  # type: ignore[arg-type]


# -- end to end, on each provider against the emulator ------------------------------------


async def test_the_server_sees_the_client_leave_after_n_tokens(
    provider: Provider[Any], emulator: Emulator
) -> None:
    # Slow enough (20 tokens/s over 200 words) that the reply is far from over at 3 tokens.
    stream = provider.stream("Tell me a story", model=model(provider.name, tps=20, words=200))
    events, error = await run(stream.pipe(take_tokens(3)))
    assert error is None
    assert len([e for e in events if isinstance(e, TokenEvent)]) == 3
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert [e for e in events if isinstance(e, DoneEvent)] == [final]
    assert final.finish_reason == FinishReason.TOKEN_LIMIT
    assert (final.provider, final.model) == (provider.name, stream.request.model)
    assert final.usage.completion_tokens >= 3
    assert final.usage.prompt_tokens > 0
    assert final.details["usage_estimated"] is True
    [request] = await emulator.wait_for_disconnects_async(1)
    assert request.disconnected
    assert not request.completed
    assert len(emulator.requests) == 1

"""Marble-test helpers for stream operators: events, and an LLMStream over a test observable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from reactivex import Observable, abc
from reactivex.scheduler.scheduler import Scheduler
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import DoneEvent, FinishReason, LLMStream, Provider, StreamRequest, TokenEvent, Usage
from rxllm.events import ReasoningEvent, StreamEvent

on_next = ReactiveTest.on_next
on_error = ReactiveTest.on_error
on_completed = ReactiveTest.on_completed
subscribe = ReactiveTest.subscribe


def tok(text: str) -> StreamEvent:
    return TokenEvent(text)


def think(text: str) -> StreamEvent:
    return ReasoningEvent(text)


def done(completion: int = 2, *, details: dict[str, Any] | None = None) -> StreamEvent:
    """A provider's own done (real usage)."""
    return DoneEvent(
        usage=Usage(prompt_tokens=10, completion_tokens=completion),
        finish_reason=FinishReason.STOP,
        model="m",
        provider="p",
        details=details or {},
    )


def estimated(
    reason: FinishReason,
    *,
    tokens: int = 0,
    reasoning: int = 0,
    prompt: int = 0,
    model: str = "",
    provider: str = "",
    **details: Any,
) -> DoneEvent:
    """The done an operator emits when it ends a stream early."""
    return DoneEvent(
        usage=Usage(
            prompt_tokens=prompt,
            completion_tokens=tokens + reasoning,
            reasoning_tokens=reasoning,
        ),
        finish_reason=reason,
        model=model,
        provider=provider,
        details={"usage_estimated": True, **details},
    )


class _MarbleProvider(Provider[None]):
    name = "marble"
    api_key_env = ()
    default_model = "marble-1"

    def _make_client(self) -> None:
        return None

    def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        raise AssertionError("a marble stream never calls its provider")


class MarbleStream(LLMStream):
    """An LLMStream (provider "marble") whose events come from a test observable."""

    def __init__(self, events: Observable[StreamEvent], request: StreamRequest) -> None:
        super().__init__(_MarbleProvider(api_key="k"), request)
        self._events = events

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[StreamEvent],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        return self._events.subscribe(observer, scheduler=scheduler)


PROMPT = "x" * 40
"""A prompt estimated at 10 tokens (four characters a token)."""


def marble_stream(events: Observable[StreamEvent], model: str = "marble-1") -> MarbleStream:
    return MarbleStream(events, StreamRequest(model=model, prompt=PROMPT))


class BusyConsumer(Scheduler):
    """A consumer's scheduler that gets round to each action ``delay`` ticks after it was
    scheduled, on a TestScheduler's virtual clock: a UI loop that is busy redrawing."""

    def __init__(self, clock: TestScheduler, delay: float) -> None:
        self.clock = clock
        self.delay = delay
        self.deliveries = 0

    @property
    def now(self) -> datetime:
        return self.clock.now

    def schedule(self, action: abc.ScheduledAction[Any], state: Any = None) -> abc.DisposableBase:
        self.deliveries += 1
        return self.clock.schedule_relative(self.delay, action, state)

    def schedule_relative(
        self, duetime: Any, action: abc.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        return self.clock.schedule_relative(
            self.clock.to_seconds(duetime) + self.delay, action, state
        )

    def schedule_absolute(
        self, duetime: Any, action: abc.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        return self.clock.schedule_absolute(duetime, action, state)


def decided(event: StreamEvent, winner: int, **details: Any) -> StreamEvent:
    """The winner's done as race, hedge and fallback pass it on."""
    assert isinstance(event, DoneEvent)
    return DoneEvent(
        usage=event.usage,
        finish_reason=event.finish_reason,
        model=event.model,
        provider=event.provider,
        details={**event.details, "winner": winner, **details},
    )

"""``race``: several streams, the first to produce a token wins, the others are disposed.

This module also holds the contest that ``hedge`` and ``fallback`` are built
on: contenders that start now, after a delay, or only when all before them
failed; the first token (or ``done``) commits to one of them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SingleAssignmentDisposable

from ..events import DoneEvent, StreamEvent, TokenEvent, Usage
from ..metering import UsageMeter
from ..scheduling import stream_scheduler

__all__ = ["Contender", "contest", "race"]

Contender = tuple[Observable[StreamEvent], float]
"""A stream and when it starts: ``0`` at once, ``n`` seconds later unless a winner
is known by then, ``math.inf`` only when every contender started before it has failed."""


def race(*streams: Observable[StreamEvent]) -> Observable[StreamEvent]:
    """Subscribe to all streams at once; the first to produce a token wins.

    The moment one stream emits its first ``token`` (or its ``done``, for an
    empty reply), the others are disposed, which closes their connections.
    Events a contender emits before its first token (reasoning) are held back
    and delivered, in order, only if it wins, so the output is always one
    stream's. A contender that fails before any token drops out and the race
    goes on; if all fail, the last error is raised.

    The winner's ``done`` is passed on with ``details["winner"]`` (its index
    in ``streams``) and, when losers used anything, ``details["discarded_usage"]``:
    the estimated :class:`~rxllm.events.Usage` of the disposed contenders
    (their prompts were sent; see :mod:`rxllm.operators._usage`).

    Example:
        >>> race(claude.stream(req), gpt.stream(req), gemini.stream(req))

    .. marble::
        :alt: race

        a: ---r---x-y-D|
        b: -----p-q---D|
        [      race(a, b)      ]
           -----p-q---D|     (b's first token comes first; a is disposed then)

    Args:
        streams: The contenders (at least one).

    Returns:
        An ``Observable[StreamEvent]`` of the winner's events.

    Raises:
        ValueError: When no stream is given.
    """
    if not streams:
        raise ValueError("race() needs at least one stream")
    return contest([(stream, 0.0) for stream in streams], hold_until_win=True)


def contest(contenders: Sequence[Contender], *, hold_until_win: bool) -> Observable[StreamEvent]:
    """The stream of whichever contender produces a token first (see :data:`Contender`).

    With ``hold_until_win`` events before a contender's first token are held
    back until it wins; without, they are passed on as they come (for
    ``fallback``, where only one contender runs at a time).
    """
    entries = list(contenders)
    if not entries:
        raise ValueError("a contest needs at least one stream")

    def subscribe(
        observer: abc.ObserverBase[StreamEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return _Contest(entries, observer, scheduler, hold_until_win).start()

    return Observable(subscribe)


class _Entry:
    def __init__(self, source: Observable[StreamEvent], delay: float) -> None:
        self.source = source
        self.delay = delay
        self.meter = UsageMeter(source)
        self.held: list[StreamEvent] = []
        self.subscription = SingleAssignmentDisposable()
        self.timer = SingleAssignmentDisposable()
        self.started = False
        self.out = False
        """Failed or completed before it won."""


class _Contest:
    def __init__(
        self,
        contenders: list[Contender],
        observer: abc.ObserverBase[StreamEvent],
        scheduler: abc.SchedulerBase | None,
        hold_until_win: bool,
    ) -> None:
        self.entries = [_Entry(source, delay) for source, delay in contenders]
        self.observer = observer
        self.scheduler = scheduler
        self.hold = hold_until_win
        self.winner: int | None = None
        self.ended = False
        self.last_error: Exception | None = None
        self.discarded = Usage()
        self.lock = threading.RLock()
        self.disposables = CompositeDisposable()
        for entry in self.entries:
            self.disposables.add(entry.subscription)
            self.disposables.add(entry.timer)

    def start(self) -> abc.DisposableBase:
        with self.lock:
            for index, entry in enumerate(self.entries):
                if self.winner is not None or self.ended:
                    break
                if entry.started:  # a contender before it failed at once and started it
                    continue
                if entry.delay == 0:
                    self._start(index)
                elif math.isfinite(entry.delay):
                    self._arm(index)
            if self.winner is None and not self.ended and not self._running():
                self._start_next_or_fail()
        return self.disposables

    # -- starting contenders ------------------------------------------------------------

    def _arm(self, index: int) -> None:
        def fire(_: abc.SchedulerBase, __: Any = None) -> None:
            with self.lock:
                if self.winner is None and not self.ended and not self.entries[index].started:
                    self._start(index)

        timers = stream_scheduler(self.scheduler)
        self.entries[index].timer.disposable = timers.schedule_relative(
            self.entries[index].delay, fire
        )

    def _start(self, index: int) -> None:
        entry = self.entries[index]
        entry.started = True
        entry.timer.dispose()
        entry.subscription.disposable = entry.source.subscribe(
            lambda event: self._on_next(index, event),
            lambda error: self._on_error(index, error),
            lambda: self._on_completed(index),
            scheduler=self.scheduler,
        )

    def _running(self) -> bool:
        return any(e.started and not e.out for e in self.entries)

    def _start_next_or_fail(self) -> None:
        """Nothing is running: start the first contender still waiting, or give up."""
        for index, entry in enumerate(self.entries):
            if not entry.started:
                self._start(index)
                return
        self.ended = True
        self.disposables.dispose()
        if self.last_error is not None:
            self.observer.on_error(self.last_error)
        else:
            self.observer.on_completed()

    # -- contender callbacks ------------------------------------------------------------

    def _on_next(self, index: int, event: StreamEvent) -> None:
        with self.lock:
            if self.ended:
                return
            entry = self.entries[index]
            if self.winner is None:
                entry.meter.observe(event)
                if isinstance(event, TokenEvent | DoneEvent):
                    self._win(index)
                elif self.hold:
                    entry.held.append(event)
                    return
            elif self.winner != index:
                return
            if isinstance(event, DoneEvent):
                event = self._final(event, index)
            self.observer.on_next(event)

    def _on_error(self, index: int, error: Exception) -> None:
        with self.lock:
            if self.ended:
                return
            if self.winner == index:
                self.ended = True
                self.observer.on_error(error)
                return
            self.last_error = error
            self._drop_out(index, silent_is_free=True)

    def _on_completed(self, index: int) -> None:
        with self.lock:
            if self.ended:
                return
            if self.winner == index:
                self.ended = True
                self.observer.on_completed()
                return
            self._drop_out(index, silent_is_free=False)

    def _drop_out(self, index: int, *, silent_is_free: bool) -> None:
        entry = self.entries[index]
        entry.out = True
        entry.held.clear()
        self.discarded += entry.meter.usage(silent_is_free=silent_is_free)
        if not self._running():
            self._start_next_or_fail()

    # -- the winner ---------------------------------------------------------------------

    def _win(self, index: int) -> None:
        self.winner = index
        for other, entry in enumerate(self.entries):
            if other == index:
                continue
            entry.timer.dispose()
            if entry.started and not entry.out:
                entry.subscription.dispose()
                # Its prompt was sent: count it even if nothing came back yet.
                self.discarded += entry.meter.usage()
        held, self.entries[index].held = self.entries[index].held, []
        for event in held:
            self.observer.on_next(event)

    def _final(self, event: DoneEvent, index: int) -> DoneEvent:
        if len(self.entries) == 1:
            return event
        details: dict[str, Any] = {**event.details, "winner": index}
        if self.discarded != Usage():
            details["discarded_usage"] = self.discarded
        return DoneEvent(
            usage=event.usage,
            finish_reason=event.finish_reason,
            model=event.model,
            provider=event.provider,
            details=details,
        )

"""``timeout``: limits on time to first token, silence between events, and total time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import (
    CompositeDisposable,
    Disposable,
    SingleAssignmentDisposable,
)

from .. import errors
from ..errors import TimeoutPhase
from ..events import DoneEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent
from ..metering import UsageMeter
from ..scheduling import positive_seconds, stream_scheduler
from ..stream import staged
from ._timers import release_timers

__all__ = ["timeout"]

Seconds = float | timedelta


def timeout(
    first_token: Seconds | None = None,
    idle: Seconds | None = None,
    total: Seconds | None = None,
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Fail a stream that is too slow to start, goes silent, or runs too long.

    - ``first_token``: seconds from subscribing to the first token or
      reasoning event (a model that is visibly thinking has started).
    - ``idle``: seconds without any event. Before the first token it applies
      only when ``first_token`` is not given (so a long ``first_token`` is not
      undercut by a short ``idle``).
    - ``total``: seconds from subscribing to the end of the stream.

    When a limit expires the source is disposed (for a provider's stream the
    connection is closed), then the stream emits one ``done`` with the usage
    so far (finish reason ``timeout``, ``details["timeout_phase"]`` naming the
    limit, usage estimated) and fails with :class:`rxllm.errors.TimeoutError`
    whose ``phase`` is ``"first_token"``, ``"idle"`` or ``"total"`` (only an
    idle timeout is ``retryable``). Once the source's own ``done`` has passed,
    no limit applies any more. A ``retry_on_interrupt`` placed after it holds
    that ``done`` back, retries an idle timeout and folds the usage into its
    own final ``done``.

    Timers run on the scheduler given to ``subscribe`` (a ``TestScheduler``
    in tests, where a second is one tick), else on the running asyncio loop,
    else on rxllm's background loop; never on RxPY's thread-based default.

    .. marble::
        :alt: timeout

        --a--b---------------c--D|
        [    timeout(idle=5)      ]
        --a--b-----(D#)            # = TimeoutError(phase="idle")

    Example:
        >>> stream.pipe(timeout(first_token=5, idle=10, total=120))

    Args:
        first_token: Limit on the time to the first token, in seconds.
        idle: Limit on the time between events, in seconds.
        total: Limit on the whole stream, in seconds.

    Returns:
        An operator for ``.pipe(...)``.

    Raises:
        ValueError: If no limit is given, or a limit is not a positive, finite
            number of seconds.
    """
    limits: dict[TimeoutPhase, float] = {}
    given: tuple[tuple[TimeoutPhase, Seconds | None], ...] = (
        ("first_token", first_token),
        ("idle", idle),
        ("total", total),
    )
    for phase, value in given:
        if value is not None:
            limits[phase] = positive_seconds(value, f"timeout({phase}=)")
    if not limits:
        raise ValueError("timeout() needs at least one of first_token=, idle=, total= (seconds)")

    def operator(source: Observable[StreamEvent], _before: int) -> Observable[StreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[StreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            return _TimedRun(source, observer, limits, scheduler).start()

        return Observable(subscribe)

    return staged(operator)


_MESSAGES: dict[TimeoutPhase, str] = {
    "first_token": "no token within {:g}s of the request (timeout first_token=)",
    "idle": "the stream went silent for {:g}s (timeout idle=)",
    "total": "the stream ran longer than {:g}s (timeout total=)",
}


class _TimedRun:
    """One subscription: the source, up to three timers, and the lock that orders them.

    The source and the timers may call in on different threads (a synchronous
    source with timers on rxllm's loop), so state changes and item emissions
    happen under one lock; the end is claimed under it and told outside it.
    Timers are released with :func:`release_timers`, which never waits for
    another thread.
    """

    def __init__(
        self,
        source: Observable[StreamEvent],
        observer: abc.ObserverBase[StreamEvent],
        limits: dict[TimeoutPhase, float],
        scheduler: abc.SchedulerBase | None,
    ) -> None:
        self.source = source
        self.observer = observer
        self.limits = limits
        self.scheduler = scheduler
        self.timers_on = stream_scheduler(scheduler)
        self.meter = UsageMeter(source)
        self.lock = threading.RLock()
        self.stopped = False
        self.started = False  # a token or reasoning event has arrived
        self.idle_generation = 0
        self.upstream = SingleAssignmentDisposable()
        self.first_token_timer = SingleAssignmentDisposable()
        self.total_timer = SingleAssignmentDisposable()
        self.idle_timer: abc.DisposableBase | None = None

    def start(self) -> abc.DisposableBase:
        if "total" in self.limits:
            self.total_timer.disposable = self._schedule("total")
        if "first_token" in self.limits:
            self.first_token_timer.disposable = self._schedule("first_token")
        elif "idle" in self.limits:
            self._arm_idle()
        self.upstream.disposable = self.source.subscribe(
            self.on_next, self.on_error, self.on_completed, scheduler=self.scheduler
        )
        return CompositeDisposable(self.upstream, Disposable(self._release_timers))

    # -- the source's side -------------------------------------------------------------

    def on_next(self, event: StreamEvent) -> None:
        rearm = False
        first = False
        with self.lock:
            if self.stopped:
                return
            self.meter.observe(event)
            if isinstance(event, TokenEvent | ReasoningEvent) and not self.started:
                self.started = first = True
            if "idle" in self.limits and (self.started or "first_token" not in self.limits):
                self.idle_generation += 1
                rearm = True
            self.observer.on_next(event)
        if isinstance(event, DoneEvent):
            # The stream has finished; only its completion is still to come.
            self._release_timers()
            return
        if first:
            release_timers(self.timers_on, self.first_token_timer)
        if rearm:
            self._arm_idle()

    def on_error(self, error: Exception) -> None:
        if self._stop():
            self._release_timers()
            self.observer.on_error(error)

    def on_completed(self) -> None:
        if self._stop():
            self._release_timers()
            self.observer.on_completed()

    def _stop(self) -> bool:
        """Claim the end of the stream: true for the one caller that may tell it.

        Items are emitted under the lock and the end is claimed under it, so
        nothing can follow the end; the end itself is told outside the lock.
        """
        with self.lock:
            if self.stopped:
                return False
            self.stopped = True
            return True

    # -- the timers' side --------------------------------------------------------------

    def _schedule(self, phase: TimeoutPhase, generation: int = 0) -> abc.DisposableBase:
        def fire(_: abc.SchedulerBase, __: Any = None) -> None:
            self._expire(phase, generation)

        return self.timers_on.schedule_relative(self.limits[phase], fire)

    def _arm_idle(self) -> None:
        timer = self._schedule("idle", self.idle_generation)
        with self.lock:
            previous, self.idle_timer = self.idle_timer, timer
            stopped = self.stopped
        if previous is not None:
            release_timers(self.timers_on, previous)
        if stopped:  # stopped while this was being armed
            release_timers(self.timers_on, timer)

    def _expire(self, phase: TimeoutPhase, generation: int) -> None:
        with self.lock:
            if phase == "idle" and generation != self.idle_generation:
                return  # an event arrived since this timer was armed
            if self.meter.final is not None:
                return  # the source's own done has passed: the stream is finishing
            if not self._stop():
                return
        # Close the connection first, then report what was used and why it ended.
        self.upstream.dispose()
        self._release_timers()
        meter = self.meter
        error = errors.TimeoutError(
            _MESSAGES[phase].format(self.limits[phase]),
            phase=phase,
            provider=meter.provider or None,
            model=meter.model or None,
        )
        self.observer.on_next(meter.done(FinishReason.TIMEOUT, timeout_phase=phase))
        self.observer.on_error(error)

    def _release_timers(self) -> None:
        with self.lock:
            idle, self.idle_timer = self.idle_timer, None
        timers = CompositeDisposable(self.first_token_timer, self.total_timer)
        if idle is not None:
            timers.add(idle)
        release_timers(self.timers_on, timers)

"""``batch_tokens``: fewer, larger token events for consumers that redraw per event."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable

from ..events import StreamEvent, TokenEvent
from ..scheduling import positive_seconds, stream_scheduler
from ..stream import staged
from ._timers import release_timers

__all__ = ["batch_tokens"]


def batch_tokens(
    max_count: int | None = None,
    max_interval: float | timedelta | None = None,
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Merge consecutive token events into one, by count and/or by time.

    A batch is passed on as one ``TokenEvent`` whose text is the batch's texts
    joined, exactly (nothing added, nothing lost), when

    - it holds ``max_count`` token events, or
    - ``max_interval`` seconds have passed since its first token (so no token
      waits longer than that), or
    - any other event arrives (``reasoning``, ``done``, ``error``): the batch
      goes first and the event follows, so order is kept, or
    - the stream completes or fails: the last, partial batch is passed on
      before the completion or the error.

    Unlike RxPY's ``buffer_with_time_or_count``, a flush by the timer and the
    end of the stream cannot race to lose or repeat the last batch: both are
    decided under one lock. Timers run on the scheduler given to ``subscribe``,
    else the running asyncio loop, else rxllm's background loop.

    .. marble::
        :alt: batch_tokens

        --a--b--c--d--e--R--f--D|
        [ batch_tokens(max_count=2) ]
        -----x-----y-----(eR)--(fD)|

        x: "ab", y: "cd", R: a reasoning event, D: done

    Example:
        >>> stream.pipe(batch_tokens(max_count=20, max_interval=0.05))  # <= 20 redraws/s

    Args:
        max_count: Most token events in one batch; at least 1.
        max_interval: Most seconds a batch waits after its first token; > 0.

    Returns:
        An operator for ``.pipe(...)``.

    Raises:
        ValueError: If neither limit is given, or one is not positive.
    """
    if max_count is not None and (
        isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1
    ):
        raise ValueError(f"batch_tokens(max_count=) must be an integer >= 1, got {max_count!r}")
    interval = (
        None
        if max_interval is None
        else positive_seconds(max_interval, "batch_tokens(max_interval=)")
    )
    if max_count is None and interval is None:
        raise ValueError(
            "batch_tokens() needs max_count= or max_interval= (or both); "
            "without either a batch would only end with the stream"
        )

    def operator(source: Observable[StreamEvent], _before: int) -> Observable[StreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[StreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            return _Batcher(observer, max_count, interval, scheduler).start(source)

        return Observable(subscribe)

    return staged(operator)


class _Batcher:
    """One subscription's pending batch.

    The source and the timer may call in on different threads; the batch, the
    flag that the stream has ended and every emission of items are guarded by
    one lock, and the end is claimed under it and told outside it.
    """

    def __init__(
        self,
        observer: abc.ObserverBase[StreamEvent],
        max_count: int | None,
        interval: float | None,
        scheduler: abc.SchedulerBase | None,
    ) -> None:
        self.observer = observer
        self.max_count = max_count
        self.interval = interval
        self.scheduler = scheduler
        self.timers_on = stream_scheduler(scheduler) if interval is not None else None
        self.lock = threading.RLock()
        self.pending: list[TokenEvent] = []
        self.batch_number = 0  # which batch a timer belongs to
        self.timer: abc.DisposableBase | None = None
        self.stopped = False
        self.upstream = SingleAssignmentDisposable()

    def start(self, source: Observable[StreamEvent]) -> abc.DisposableBase:
        self.upstream.disposable = source.subscribe(
            self.on_next, self.on_error, self.on_completed, scheduler=self.scheduler
        )
        return CompositeDisposable(self.upstream, Disposable(self._dispose))

    def on_next(self, event: StreamEvent) -> None:
        with self.lock:
            if self.stopped:
                return
            if isinstance(event, TokenEvent):
                self.pending.append(event)
                if self.max_count is not None and len(self.pending) >= self.max_count:
                    self._flush()
                elif len(self.pending) == 1 and self.timers_on and self.interval:
                    self._arm_timer(self.timers_on, self.interval)
                return
            self._flush()
            self.observer.on_next(event)

    def on_error(self, error: Exception) -> None:
        last = self._stop()
        if last is not None:
            if last:
                self.observer.on_next(_joined(last))
            self.observer.on_error(error)

    def on_completed(self) -> None:
        last = self._stop()
        if last is not None:
            if last:
                self.observer.on_next(_joined(last))
            self.observer.on_completed()

    def _stop(self) -> list[TokenEvent] | None:
        """Claim the end: the last batch for the one caller that may tell it, else None."""
        with self.lock:
            if self.stopped:
                return None
            self.stopped = True
            last, self.pending = self.pending, []
            timer, self.timer = self.timer, None
        if timer is not None and self.timers_on is not None:
            release_timers(self.timers_on, timer)
        return last

    def _dispose(self) -> None:
        self._stop()

    # -- under the lock -------------------------------------------------------------------

    def _flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.batch_number += 1
        timer, self.timer = self.timer, None
        if timer is not None and self.timers_on is not None:
            release_timers(self.timers_on, timer)  # never waits, so safe under the lock
        self.observer.on_next(_joined(batch))

    def _arm_timer(self, timers_on: abc.SchedulerBase, interval: float) -> None:
        batch_number = self.batch_number

        def fire(_: abc.SchedulerBase, __: Any = None) -> None:
            with self.lock:
                if not self.stopped and self.batch_number == batch_number:
                    self._flush()

        self.timer = timers_on.schedule_relative(interval, fire)


def _joined(batch: list[TokenEvent]) -> TokenEvent:
    return batch[0] if len(batch) == 1 else TokenEvent("".join(t.text for t in batch))

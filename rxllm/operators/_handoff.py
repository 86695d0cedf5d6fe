"""Handing events to a push consumer that may be busy: what ``latest`` and ``drop_when_busy`` share.

In Rx the source calls the consumer; a consumer can only be "busy" if
delivery is decoupled from arrival. So these operators deliver on a
scheduler (the consumer's: a UI loop, a worker thread; by default the
stream's loop), one event per scheduled action. From the moment an event is
scheduled for delivery until the consumer has returned from it, the
consumer is *busy*; events that arrive meanwhile wait in a queue that a
strategy shapes (coalesce, or drop and count). Completion and errors always
wait their turn behind the queued events.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable

from ..events import StreamEvent
from ..scheduling import stream_scheduler
from ._timers import release_timers

__all__ = ["Admission", "End", "handoff"]


class End:
    """The source's completion (``error is None``) or failure, queued behind its events."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error


class Admission(Protocol):
    """A strategy: how an event joins the queue while the consumer is busy."""

    def admit(self, queue: deque[StreamEvent | End], event: StreamEvent) -> None:
        """Add ``event`` to ``queue`` (the events not yet handed over), or not."""

    def delivering(self, event: StreamEvent) -> StreamEvent:
        """The event as the consumer gets it (e.g. a ``done`` with counts added)."""


def handoff(
    strategy: Callable[[], Admission],
    scheduler: abc.SchedulerBase | None,
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """The operator that delivers on ``scheduler`` with a fresh ``strategy()`` per subscription."""

    def operator(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[StreamEvent],
            subscribe_scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            delivery = _Delivery(
                observer, strategy(), stream_scheduler(scheduler, subscribe_scheduler)
            )
            delivery.upstream.disposable = source.subscribe(
                delivery.on_next,
                delivery.on_error,
                delivery.on_completed,
                scheduler=subscribe_scheduler,
            )
            return CompositeDisposable(delivery.upstream, Disposable(delivery.dispose))

        return Observable(subscribe)

    return operator


class _Delivery:
    def __init__(
        self,
        observer: abc.ObserverBase[StreamEvent],
        strategy: Admission,
        scheduler: abc.SchedulerBase,
    ) -> None:
        self.observer = observer
        self.strategy = strategy
        self.scheduler = scheduler
        self.lock = threading.Lock()
        self.queue: deque[StreamEvent | End] = deque()
        self.busy = False
        self.disposed = False
        self.pending: abc.DisposableBase | None = None
        self.upstream = SingleAssignmentDisposable()

    # -- arrivals (the source's thread) -----------------------------------------------

    def on_next(self, event: StreamEvent) -> None:
        with self.lock:
            if self.disposed:
                return
            self.strategy.admit(self.queue, event)
            start = self._claim_delivery()
        if start:
            self._schedule_delivery()

    def on_error(self, error: Exception) -> None:
        self._arrive_end(End(error))

    def on_completed(self) -> None:
        self._arrive_end(End(None))

    def _arrive_end(self, end: End) -> None:
        with self.lock:
            if self.disposed:
                return
            self.queue.append(end)
            start = self._claim_delivery()
        if start:
            self._schedule_delivery()

    def _claim_delivery(self) -> bool:  # under the lock
        """Whether the caller must schedule the next delivery (then the consumer is busy)."""
        if self.busy or not self.queue:
            return False
        self.busy = True
        return True

    def _schedule_delivery(self) -> None:
        # Outside the lock: an immediate scheduler runs the delivery right here.
        pending = self.scheduler.schedule(self._deliver_one)
        with self.lock:
            if not self.disposed:
                self.pending = pending
                return
        release_timers(self.scheduler, pending)

    # -- deliveries (the consumer's scheduler) --------------------------------------------

    def _deliver_one(self, _: abc.SchedulerBase, __: Any = None) -> None:
        with self.lock:
            if self.disposed or not self.queue:
                self.busy = False
                return
            item = self.queue.popleft()
            if isinstance(item, End):
                self.disposed = True  # nothing may follow the end
            else:
                item = self.strategy.delivering(item)
        # The consumer runs outside the lock: arrivals keep queueing meanwhile.
        if isinstance(item, End):
            if item.error is None:
                self.observer.on_completed()
            else:
                self.observer.on_error(item.error)
            return
        self.observer.on_next(item)
        with self.lock:
            self.busy = False
            start = not self.disposed and self._claim_delivery()
        if start:
            self._schedule_delivery()

    def dispose(self) -> None:
        with self.lock:
            self.disposed = True
            self.queue.clear()
            pending, self.pending = self.pending, None
        if pending is not None:
            release_timers(self.scheduler, pending)

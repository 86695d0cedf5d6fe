"""``cancel_when``: stop a stream as soon as any trigger fires (the seed's ``merge`` of signals)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SingleAssignmentDisposable

from ..events import DoneEvent, FinishReason, StreamEvent, Usage
from ..metering import UsageMeter

__all__ = ["cancel_when"]


def cancel_when(
    *triggers: Observable[Any],
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Stop the stream as soon as any trigger emits, ending it with a ``cancelled`` done.

    A trigger is any observable; its first item (whatever it is) stops the
    stream: a ``Subject`` behind a stop button, ``reactivex.timer(30)``,
    another stream's first token. The source is disposed at once (for a
    provider's stream that closes the connection), every trigger subscription
    is disposed, and the stream emits one ``done`` with the usage so far
    (finish reason ``cancelled``, usage estimated) and completes.

    Triggers are subscribed before the source: one that fires during
    subscription stops the stream before any request is made (and its usage
    is zero). A trigger that completes without emitting is ignored. A trigger
    that fails ends the stream with a ``done`` (finish reason ``error``) and
    that error; wrap a trigger that may fail in ``ops.catch(reactivex.never())``
    to ignore its failure instead. After the source's own ``done``, a trigger
    only completes the stream early: there is no second ``done``.

    Stopping by hand needs no operator (dispose the subscription), and neither
    does never stopping.

    .. marble::
        :alt: cancel_when

        --a--b--c--d--D|
        -------x--------        (a trigger)
        [ cancel_when(trigger) ]
        --a--b-(D|)             D: done, finish reason "cancelled"

    Example:
        >>> stop = reactivex.subject.Subject()
        >>> stream.pipe(cancel_when(stop, reactivex.timer(30))).subscribe(print)
        >>> stop.on_next(None)  # the stop button

    Args:
        *triggers: Observables whose first item stops the stream; at least one.

    Returns:
        An operator for ``.pipe(...)``.

    Raises:
        ValueError: If no trigger is given, or a trigger is not an observable.
    """
    if not triggers:
        raise ValueError(
            "cancel_when() needs at least one trigger observable "
            "(to stop by hand, dispose the subscription)"
        )
    for trigger in triggers:
        if not isinstance(trigger, abc.ObservableBase):
            raise ValueError(f"cancel_when() triggers must be observables, got {trigger!r}")

    def operator(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[StreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            meter = UsageMeter(source)
            lock = threading.RLock()
            stopped = False
            requested = False
            upstream = SingleAssignmentDisposable()
            watching = CompositeDisposable()

            # Items are emitted under the lock; the end is decided under it and told
            # outside it, after disposing, so that disposing a trigger that lives on
            # another thread never waits while holding the lock.
            def stop() -> bool:
                nonlocal stopped
                with lock:
                    if stopped:
                        return False
                    stopped = True
                upstream.dispose()
                watching.dispose()
                return True

            def end_early(reason: FinishReason, error: Exception | None = None) -> None:
                if not stop():
                    return
                if meter.final is None:
                    if requested:
                        observer.on_next(meter.done(reason))
                    else:
                        observer.on_next(_nothing_sent(meter, reason))
                if error is None:
                    observer.on_completed()
                else:
                    observer.on_error(error)

            def on_trigger(_: Any) -> None:
                end_early(FinishReason.CANCELLED)

            def on_trigger_error(error: Exception) -> None:
                end_early(FinishReason.ERROR, error)

            def on_next(event: StreamEvent) -> None:
                with lock:
                    if stopped:
                        return
                    meter.observe(event)
                    observer.on_next(event)

            def on_error(error: Exception) -> None:
                if stop():
                    observer.on_error(error)

            def on_completed() -> None:
                if stop():
                    observer.on_completed()

            for trigger in triggers:
                if stopped:
                    break
                watching.add(trigger.subscribe(on_trigger, on_trigger_error, scheduler=scheduler))
            with lock:
                requested = not stopped
            if requested:
                upstream.disposable = source.subscribe(
                    on_next, on_error, on_completed, scheduler=scheduler
                )
            return CompositeDisposable(upstream, watching)

        return Observable(subscribe)

    return operator


def _nothing_sent(meter: UsageMeter, reason: FinishReason) -> DoneEvent:
    """The done of a stream stopped before its request was made: it used nothing."""
    return DoneEvent(
        usage=Usage(),
        finish_reason=reason,
        model=meter.model,
        provider=meter.provider,
        details={"usage_estimated": True},
    )

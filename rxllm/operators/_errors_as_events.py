"""``errors_as_events``: an error becomes an in-band ``error`` event, for fan-out lanes."""

from __future__ import annotations

from collections.abc import Callable

import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler import ImmediateScheduler

from ..events import ErrorEvent, StreamEvent

__all__ = ["errors_as_events"]


def errors_as_events() -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Turn the stream's error into an ``ErrorEvent``, followed by completion.

    For fan-out, where one failing lane must not end the others (``merge``,
    ``combine_latest`` and friends end at the first error): each lane carries
    its failure in-band and completes. Events before the error pass through
    unchanged; a stream that does not fail is not touched. It is RxPY's
    ``ops.catch`` with the error as its one replacement event.

    Place it last, after ``retry_on_interrupt``: before it, the retry never
    sees an error to retry.

    .. marble::
        :alt: errors_as_events

        --a--b--#
        [errors_as_events()]
        --a--b--(E|)          E: ErrorEvent(the error)

    Example:
        >>> lanes = [p.stream(request).pipe(errors_as_events()) for p in providers]
        >>> reactivex.merge(*lanes).subscribe(show)  # one lane's 429 ends only that lane

    Returns:
        An operator for ``.pipe(...)``.
    """

    def in_band(error: Exception, _source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        # Immediately, on the thread of the error: no hop to another scheduler in between.
        return reactivex.return_value(ErrorEvent(error), scheduler=ImmediateScheduler.singleton())

    return ops.catch(in_band)

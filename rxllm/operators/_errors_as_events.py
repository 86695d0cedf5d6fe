"""``errors_as_events``: an error becomes an in-band ``error`` event, for fan-out lanes."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from ..events import ErrorEvent, StreamEvent

__all__ = ["errors_as_events"]


def errors_as_events() -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Turn the stream's error into an ``ErrorEvent``, followed by completion.

    For fan-out, where one failing lane must not end the others (``merge``,
    ``combine_latest`` and friends end at the first error): each lane carries
    its failure in-band and completes. Events before the error pass through
    unchanged; a stream that does not fail is not touched.

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

    def operator(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[StreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            def on_error(error: Exception) -> None:
                observer.on_next(ErrorEvent(error))
                observer.on_completed()

            return source.subscribe(
                observer.on_next, on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator

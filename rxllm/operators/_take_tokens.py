"""``take_tokens``: end a stream after n token events (the seed's ``tokenLimit``)."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

from ..events import FinishReason, StreamEvent, TokenEvent
from ..metering import UsageMeter
from ..stream import staged

__all__ = ["take_tokens"]


def take_tokens(n: int) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """End the stream after ``n`` token events, with a ``done`` for what was used.

    The n-th token is passed on, the source is disposed at once (for a
    provider's stream that closes the connection, so generation stops), and
    the stream ends with one ``done`` whose finish reason is ``token_limit``
    and whose usage is estimated from what was seen (see
    ``details["usage_estimated"]``), priced from the catalog when the model's
    price is known. Provider and model are the stream's, also after standard
    operators piped before it (``LLMStream.pipe`` keeps it an ``LLMStream``).
    Reasoning events pass through and count towards usage but not towards
    ``n``. A stream with fewer than ``n`` tokens passes through unchanged, its
    own ``done`` included.

    .. marble::
        :alt: take_tokens

        --a--b--c--d--D|
        [take_tokens(2)]
        --a--b(D|)

    Example:
        >>> stream.pipe(take_tokens(200))

    Args:
        n: How many token events to let through; at least 1.

    Returns:
        An operator for ``.pipe(...)``.

    Raises:
        ValueError: If ``n`` is not an integer of at least 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"take_tokens(n) needs an integer n >= 1, got {n!r}")

    def operator(source: Observable[StreamEvent], before: int) -> Observable[StreamEvent]:
        # On a resumed stream, earlier attempts' tokens count against the same n.
        limit = max(1, n - before)

        def subscribe(
            observer: abc.ObserverBase[StreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            usage = UsageMeter(source)
            upstream = SingleAssignmentDisposable()
            stopped = False

            def on_next(event: StreamEvent) -> None:
                nonlocal stopped
                if stopped:
                    return
                usage.observe(event)
                observer.on_next(event)
                reached = isinstance(event, TokenEvent) and usage.token_events >= limit
                if reached and usage.final is None:
                    stopped = True
                    # Dispose before telling anyone: the connection closes now, not
                    # after the consumer has dealt with the last events.
                    upstream.dispose()
                    observer.on_next(usage.done(FinishReason.TOKEN_LIMIT))
                    observer.on_completed()

            def on_error(error: Exception) -> None:
                if not stopped:
                    observer.on_error(error)

            def on_completed() -> None:
                if not stopped:
                    observer.on_completed()

            # A synchronous source may reach n inside subscribe(); assigning to a
            # disposed SingleAssignmentDisposable disposes the subscription at once.
            upstream.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=scheduler
            )
            return upstream

        return Observable(subscribe)

    return staged(operator)

"""``latest``: a busy push consumer gets the latest text, coalesced, instead of a backlog."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from reactivex import Observable, abc

from ..events import ReasoningEvent, StreamEvent, TokenEvent
from ._handoff import End, handoff

__all__ = ["latest"]


def latest(
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Keep-latest for text: while the consumer is busy, waiting tokens merge into one.

    Events are delivered on ``scheduler``, one per scheduled action; the
    consumer is busy from the moment an event is scheduled for it until it
    returns. Tokens that arrive meanwhile are not queued one by one and not
    dropped: consecutive waiting tokens are *coalesced* into one
    ``TokenEvent`` (likewise reasoning), so when the consumer is free again it
    gets all the text it missed in one event — the latest state of the reply.
    Text is never lost or reordered; ``done``, in-band errors, completion and
    failure are delivered in order after the text before them. A fast
    consumer sees the stream unchanged.

    Use it for a display that can only redraw so often (a widget, a
    terminal); for a fixed rate use ``batch_tokens``; to discard instead use
    ``drop_when_busy``.

    .. marble::
        :alt: latest

        --a-b-c-------d--D|
        [    latest(ui)    ]      ui runs each delivery 4 ticks after it is asked
        ------x-----------d---D---|

        x: one token "abc"

    Example:
        >>> from reactivex.scheduler import ThreadPoolScheduler
        >>> stream.pipe(latest(ThreadPoolScheduler(1))).subscribe(redraw)

    Args:
        scheduler: Where the consumer is called (its UI loop or worker thread).
            Default: the scheduler given to ``subscribe``, else the running
            asyncio loop, else rxllm's background loop.

    Returns:
        An operator for ``.pipe(...)``.

    Raises:
        ValueError: If ``scheduler`` is not a scheduler.
    """
    if scheduler is not None and not isinstance(scheduler, abc.SchedulerBase):
        raise ValueError(f"latest(scheduler=) must be a reactivex scheduler, got {scheduler!r}")
    return handoff(_Coalesce, scheduler)


class _Coalesce:
    def admit(self, queue: deque[StreamEvent | End], event: StreamEvent) -> None:
        last = queue[-1] if queue else None
        if isinstance(event, TokenEvent) and isinstance(last, TokenEvent):
            queue[-1] = TokenEvent(last.text + event.text)
        elif isinstance(event, ReasoningEvent) and isinstance(last, ReasoningEvent):
            queue[-1] = ReasoningEvent(last.text + event.text)
        else:
            queue.append(event)

    def delivering(self, event: StreamEvent) -> StreamEvent:
        return event

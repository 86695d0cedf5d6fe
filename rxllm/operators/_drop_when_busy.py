"""``drop_when_busy``: a busy push consumer misses tokens, and the final done says how many."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable

from reactivex import Observable, abc

from ..events import DoneEvent, ReasoningEvent, StreamEvent, TokenEvent
from ._handoff import End, handoff

__all__ = ["drop_when_busy"]


def drop_when_busy(
    capacity: int = 1,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Drop tokens a busy consumer has no room for, and count them in the final ``done``.

    Events are delivered on ``scheduler``, one per scheduled action; the
    consumer is busy from the moment an event is scheduled for it until it
    returns. At most ``capacity`` token or reasoning events wait for it;
    while that many wait, newer ones are dropped (the oldest are kept, as in
    Rx's ``onBackpressureDrop``). ``done``, in-band errors, completion and
    failure are never dropped and keep their order. The ``done`` gains
    ``details["dropped_tokens"]`` and ``details["dropped_reasoning"]``: how many
    events were dropped (0 when none). Usage is the provider's, unchanged:
    dropped tokens were still generated and billed.

    Dropped text is gone, so the reply's text is incomplete: use this for
    liveness displays (a spinner, a token counter, a "typing" preview). To
    keep all text but in fewer events, use ``latest`` or ``batch_tokens``.

    .. marble::
        :alt: drop_when_busy

        --a-b-c-------d--D|
        [drop_when_busy(1, ui)]   ui runs each delivery 4 ticks after it is asked
        ------a-----------d---D'--|

        b and c are dropped; D' is D with details dropped_tokens=2

    Example:
        >>> stream.pipe(drop_when_busy(capacity=1)).subscribe(update_spinner)

    Args:
        capacity: How many token/reasoning events may wait; at least 1.
        scheduler: Where the consumer is called (its UI loop or worker thread).
            Default: the scheduler given to ``subscribe``, else the running
            asyncio loop, else rxllm's background loop.

    Returns:
        An operator for ``.pipe(...)``.

    Raises:
        ValueError: If ``capacity`` is not an integer of at least 1, or
            ``scheduler`` is not a scheduler.
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"drop_when_busy(capacity=) must be an integer >= 1, got {capacity!r}")
    if scheduler is not None and not isinstance(scheduler, abc.SchedulerBase):
        raise ValueError(
            f"drop_when_busy(scheduler=) must be a reactivex scheduler, got {scheduler!r}"
        )
    return handoff(lambda: _Drop(capacity), scheduler)


class _Drop:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.waiting = 0  # token/reasoning events in the queue
        self.dropped_tokens = 0
        self.dropped_reasoning = 0

    def admit(self, queue: deque[StreamEvent | End], event: StreamEvent) -> None:
        if isinstance(event, TokenEvent | ReasoningEvent):
            if self.waiting >= self.capacity:
                if isinstance(event, TokenEvent):
                    self.dropped_tokens += 1
                else:
                    self.dropped_reasoning += 1
                return
            self.waiting += 1
        queue.append(event)

    def delivering(self, event: StreamEvent) -> StreamEvent:
        if isinstance(event, TokenEvent | ReasoningEvent):
            self.waiting -= 1
        elif isinstance(event, DoneEvent):
            details = {
                **event.details,
                "dropped_tokens": self.dropped_tokens,
                "dropped_reasoning": self.dropped_reasoning,
            }
            return dataclasses.replace(event, details=details)
        return event

"""Where operators run their timers: the loop the stream runs on, never a stray thread.

RxPY's default scheduler for time-based operators (``TimeoutScheduler``) uses
threading timers. rxllm's operators take the scheduler given to ``subscribe``
(``TestScheduler`` in marble tests), else the running asyncio loop's, else the
bridge's private background loop (thread-safe variant, since the subscriber
is on another thread).
"""

from __future__ import annotations

import asyncio

from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler, AsyncIOThreadSafeScheduler

from .._bridge import background_loop

__all__ = ["stream_scheduler"]


def stream_scheduler(
    *candidates: abc.SchedulerBase | None,
) -> abc.SchedulerBase:
    """The first explicit scheduler, else one on the loop where rxllm streams run."""
    for candidate in candidates:
        if candidate is not None:
            return candidate
    try:
        return AsyncIOScheduler(asyncio.get_running_loop())
    except RuntimeError:
        return AsyncIOThreadSafeScheduler(background_loop())

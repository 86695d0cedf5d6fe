"""Where operators run their timers: the loop the stream runs on, never a stray thread.

RxPY's default scheduler for time-based operators (``TimeoutScheduler``) uses
threading timers. rxllm's operators take the scheduler given to ``subscribe``
(``TestScheduler`` in marble tests), else the running asyncio loop's, else the
bridge's private background loop (thread-safe variant, since the subscriber
is on another thread).
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler, AsyncIOThreadSafeScheduler

from .bridge import background_loop

__all__ = ["positive_seconds", "stream_scheduler"]


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


def positive_seconds(value: float | timedelta, what: str) -> float:
    """``value`` (seconds or a ``timedelta``) as float seconds; ``ValueError`` naming ``what``
    unless it is finite and above zero."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"{what} must be a number of seconds, got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
    return seconds

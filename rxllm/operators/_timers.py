"""Releasing an operator's timers without ever blocking on another thread's loop.

Disposing an ``AsyncIOThreadSafeScheduler`` timer from a thread other than its
loop's *waits* for that loop to cancel it. An operator that disposes its
timers while holding its lock (when it completes, or when a downstream
``on_completed`` disposes it) would deadlock against a timer firing on that
loop and waiting for the same lock. So timers on a thread-safe loop scheduler
are released by the loop itself, later; a timer that fires meanwhile finds
its operator stopped and does nothing.
"""

from __future__ import annotations

from typing import Any

from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

__all__ = ["release_timers"]


def release_timers(scheduler: abc.SchedulerBase, timers: abc.DisposableBase) -> None:
    """Dispose ``timers`` (scheduled on ``scheduler``) without waiting for another thread."""
    if isinstance(scheduler, AsyncIOThreadSafeScheduler):

        def release(_: abc.SchedulerBase, __: Any = None) -> None:
            timers.dispose()

        scheduler.schedule(release)
    else:
        timers.dispose()

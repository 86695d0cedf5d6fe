"""``UsageTracker``: usage totals across requests, by provider, model and tag.

Every stream ends with one ``done`` that carries its usage; a tracker adds
those up. Attach it to one stream with an operator (``tracker.track(tag=...)``),
or to a provider (``provider.usage_tracker = tracker``) so that every stream of
that provider counts. Its totals are an Observable (``tracker.totals``, a
``BehaviorSubject`` of snapshots: a new one after each request) and a table
(``tracker.summary()``).

How requests count:

- A request counts once, when its ``done`` arrives. A stream that ends without
  one (an error, or disposed early) counts with the usage it was seen to use,
  estimated as :mod:`rxllm.metering` does; a request the provider refused
  before any output (rate limited, overloaded) costs nothing.
- Estimated usage (``done.details["usage_estimated"]``, or no ``done`` at all)
  is counted and marked: ``estimated_requests`` says how many requests of a row
  were estimated.
- Retried attempts count once each. After ``retry_on_interrupt`` the final
  ``done`` carries the usage summed over its attempts
  (``details["attempts"]``): a tracker there counts one request of that many
  attempts. A tracker on the provider sees every attempt as a request of its
  own. Attach one tracker in one of the two places, not both, or attempts
  count twice.

Example:
    >>> tracker = UsageTracker()
    >>> stream = model.stream("Plan it").pipe(tracker.track(tag="plan"))
    >>> await rxllm.collect(stream)
    >>> tracker.totals.subscribe(lambda rows: print(sum(r.total_tokens for r in rows)))
    >>> tracker.summary()
    [{'provider': 'anthropic', 'model': 'claude-sonnet-4-6', 'tag': 'plan', 'requests': 1, ...}]
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable
from reactivex.subject import BehaviorSubject

from .events import DoneEvent, FinishReason, StreamEvent
from .metering import USAGE_ESTIMATED, UsageMeter
from .stream import staged

__all__ = ["UsageTotals", "UsageTracker"]


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """The usage of every request counted under one provider, model and tag."""

    provider: str
    model: str
    tag: str | None = None
    requests: int = 0
    """Requests counted (a retried stream seen after ``retry_on_interrupt`` is one)."""
    attempts: int = 0
    """Attempts those requests took (more than ``requests`` when some were retried)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    """US dollars over the requests whose cost is known (see ``unpriced_requests``)."""
    estimated_requests: int = 0
    """Requests whose usage is (partly) an estimate."""
    unpriced_requests: int = 0
    """Requests without a known cost (no price in the catalog): not in ``cost``."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def estimated(self) -> bool:
        """Whether any of the counted usage is an estimate."""
        return self.estimated_requests > 0

    def row(self) -> dict[str, Any]:
        """A plain summary row (for tables, CSV, or a pandas DataFrame)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "tag": self.tag,
            "requests": self.requests,
            "attempts": self.attempts,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost, 6) if self.requests > self.unpriced_requests else None,
            "estimated": self.estimated,
        }


_Key = tuple[str, str, str | None]


class UsageTracker:
    """Usage totals across requests, by provider, model and a free-form tag.

    Thread-safe: streams on any loop or thread may count into one tracker.

    Attributes:
        totals: an Observable of snapshots (a ``BehaviorSubject``): a tuple of
            :class:`UsageTotals`, one per (provider, model, tag), in the order
            first seen; the current one on subscribe, a new one after each request.
    """

    def __init__(self) -> None:
        self._rows: dict[_Key, UsageTotals] = {}
        self._lock = threading.RLock()  # a subscriber to totals may read the tracker
        self.totals: BehaviorSubject[tuple[UsageTotals, ...]] = BehaviorSubject(())

    def add(self, done: DoneEvent, *, tag: str | None = None, estimated: bool = False) -> None:
        """Count one request that ended with ``done`` (``estimated``: its usage is a guess)."""
        usage = done.usage
        estimated = estimated or bool(done.details.get(USAGE_ESTIMATED))
        attempts = done.details.get("attempts", 1)
        key = (done.provider, done.model, tag)
        with self._lock:
            row = self._rows.get(key) or UsageTotals(done.provider, done.model, tag)
            self._rows[key] = replace(
                row,
                requests=row.requests + 1,
                attempts=row.attempts + (attempts if isinstance(attempts, int) else 1),
                prompt_tokens=row.prompt_tokens + usage.prompt_tokens,
                completion_tokens=row.completion_tokens + usage.completion_tokens,
                reasoning_tokens=row.reasoning_tokens + usage.reasoning_tokens,
                cost=row.cost + (usage.cost or 0.0),
                estimated_requests=row.estimated_requests + estimated,
                unpriced_requests=row.unpriced_requests + (usage.cost is None),
            )
            snapshot = tuple(self._rows.values())
            # Published under the lock: snapshots arrive in the order they were made.
            self.totals.on_next(snapshot)

    def snapshot(self) -> tuple[UsageTotals, ...]:
        """The totals now, one row per (provider, model, tag)."""
        with self._lock:
            return tuple(self._rows.values())

    def total(self) -> UsageTotals:
        """Every row added up (provider, model and tag empty)."""
        summed = UsageTotals("", "")
        for row in self.snapshot():
            summed = replace(
                summed,
                requests=summed.requests + row.requests,
                attempts=summed.attempts + row.attempts,
                prompt_tokens=summed.prompt_tokens + row.prompt_tokens,
                completion_tokens=summed.completion_tokens + row.completion_tokens,
                reasoning_tokens=summed.reasoning_tokens + row.reasoning_tokens,
                cost=summed.cost + row.cost,
                estimated_requests=summed.estimated_requests + row.estimated_requests,
                unpriced_requests=summed.unpriced_requests + row.unpriced_requests,
            )
        return summed

    def summary(self) -> list[dict[str, Any]]:
        """One plain row per (provider, model, tag) (see :meth:`UsageTotals.row`)."""
        return [row.row() for row in self.snapshot()]

    def track(
        self, tag: str | None = None
    ) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
        """An operator that counts each subscription of the stream it is piped onto.

        Events pass through unchanged. Piped onto a provider's stream it stays
        resumable, and a resumed attempt counts as a request of its own; piped
        after ``retry_on_interrupt`` it counts the summed ``done`` once.

        Example:
            >>> provider.stream("Hi").pipe(retry_on_interrupt(3), tracker.track(tag="qa"))
        """

        def stage(source: Observable[StreamEvent], _before: int) -> Observable[StreamEvent]:
            return _counted(source, self, tag)

        return staged(stage)

    def __repr__(self) -> str:
        total = self.total()
        return f"<UsageTracker {total.requests} requests, {total.total_tokens} tokens>"


def _counted(
    source: Observable[StreamEvent], tracker: UsageTracker, tag: str | None
) -> Observable[StreamEvent]:
    def subscribe(
        observer: abc.ObserverBase[StreamEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        meter = UsageMeter(source)
        counted = False

        def count(done: DoneEvent | None, *, silent_is_free: bool) -> None:
            nonlocal counted
            if counted:
                return
            counted = True
            if done is None:
                usage = meter.usage(silent_is_free=silent_is_free)
                done = DoneEvent(usage, FinishReason.ERROR, meter.model, meter.provider)
                tracker.add(done, tag=tag, estimated=True)
            else:
                tracker.add(done, tag=tag)

        def on_next(event: StreamEvent) -> None:
            meter.observe(event)
            if isinstance(event, DoneEvent):
                count(event, silent_is_free=False)
            observer.on_next(event)

        def on_error(error: Exception) -> None:
            count(None, silent_is_free=True)
            observer.on_error(error)

        subscription = source.subscribe(
            on_next, on_error, observer.on_completed, scheduler=scheduler
        )
        # Disposed before its done: what it used so far still counts.
        return CompositeDisposable(
            subscription, Disposable(lambda: count(None, silent_is_free=False))
        )

    return Observable(subscribe)

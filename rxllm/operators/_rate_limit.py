"""``rate_limit``: streams wait before they start until a shared budget allows them.

The budget is a pair of token buckets, the model the providers themselves
describe for their limits (capacity = one minute's allowance, refilled
continuously): one for requests, one for tokens. No library fits: the
well-kept ones (``limits``, ``aiolimiter``, ``pyrate-limiter``) read the wall
clock or block an asyncio task, while here time must come from the Rx
scheduler (so ``TestScheduler`` drives it), a charge must be corrected after
the fact (the real usage arrives in ``done``) and a server's retry-after must
pause everyone. The bucket arithmetic is a few lines; the queue is the part
that matters.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable
from reactivex.scheduler import VirtualTimeScheduler

from ..errors import RateLimitedError
from ..events import DoneEvent, StreamEvent
from ..metering import estimate_prompt_tokens
from ..scheduling import stream_scheduler
from ..stream import LLMStream, staged
from ._timers import release_timers

if TYPE_CHECKING:
    from ..config import Settings
    from ..vendors import ProviderSpec

__all__ = ["RateLimiter", "rate_limit"]


def _clock(scheduler: abc.SchedulerBase) -> float:
    """Seconds on the scheduler's clock: virtual time in tests, else monotonic time."""
    if isinstance(scheduler, VirtualTimeScheduler):
        return float(scheduler.to_seconds(scheduler.now))
    return time.monotonic()


class _Bucket:
    """``capacity`` units, refilled at ``capacity`` per minute; may go into debt."""

    def __init__(self, per_minute: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated: float | None = None

    def refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` can be taken (more than capacity waits for a full bucket)."""
        self.refill(now)
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def give(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


class _Waiter:
    def __init__(self, cost: int, scheduler: abc.SchedulerBase, start: Callable[[], None]) -> None:
        self.cost = cost
        self.scheduler = scheduler
        self.start = start
        self.cancelled = False
        self.granted = False  # charged to the budget, its start scheduled
        self.started = False  # subscribed upstream: the request is on its way


def _run(_: abc.SchedulerBase, start: Callable[[], None] | None) -> None:
    if start is not None:
        start()


class RateLimiter:
    """A request and token budget shared by every stream piped through ``rate_limit(limiter)``.

    Streams start in the order they asked (first come, first served). A
    stream's token cost is estimated when it asks: for an
    :class:`~rxllm.stream.LLMStream`, its prompt (four characters a token)
    plus ``max_tokens`` (or ``default_max_tokens`` when the request sets
    none); for any other Observable, ``default_cost``. When the stream's
    ``done`` arrives the charge is corrected to the real ``total_tokens``
    (refunding the difference, or going into debt); a stream that ends
    without a ``done`` keeps its estimate. A stream disposed after it was
    granted its budget but before it subscribed upstream gives its request
    and tokens back. A
    :class:`~rxllm.errors.RateLimitedError` with ``retry_after`` seen on any
    of the streams pauses the whole limiter for that long.

    Time comes from each stream's scheduler: ``TestScheduler``'s virtual
    clock in tests, the monotonic clock otherwise. Share a limiter among
    streams on the same kind of clock.

    Example:
        >>> limiter = RateLimiter(requests_per_minute=50, tokens_per_minute=40_000)
        >>> streams = [provider.stream(p).pipe(rate_limit(limiter)) for p in prompts]

    Args:
        requests_per_minute: Requests allowed per minute (``None``: unlimited).
        tokens_per_minute: Tokens (prompt + completion) per minute (``None``: unlimited).
        default_max_tokens: Completion tokens assumed for a request without ``max_tokens``.
        default_cost: Tokens charged up front for a stream that is not an ``LLMStream``.

    Raises:
        ValueError: When neither limit is given, or a number is not positive.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        default_max_tokens: int = 1024,
        default_cost: int = 1000,
    ) -> None:
        if requests_per_minute is None and tokens_per_minute is None:
            raise ValueError("RateLimiter needs requests_per_minute or tokens_per_minute")
        for name, value in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
            ("default_max_tokens", default_max_tokens),
            ("default_cost", default_cost),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"RateLimiter: {name} must be a number > 0, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"RateLimiter: {name} must be finite, got {value!r}")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.default_max_tokens = default_max_tokens
        self.default_cost = default_cost
        self._requests = _Bucket(requests_per_minute) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute) if tokens_per_minute else None
        self._queue: deque[_Waiter] = deque()
        self._paused_until = -math.inf
        # The wake-up timer for the head of the queue: its scheduler, the timer, its number.
        self._timer: tuple[abc.SchedulerBase, abc.DisposableBase] | None = None
        self._timer_generation = 0
        self._lock = threading.RLock()

    @classmethod
    def for_provider(
        cls, name: str | ProviderSpec, *, settings: Settings | None = None
    ) -> RateLimiter | None:
        """The process-wide limiter configured for provider ``name`` (``None`` if unlimited).

        Limits come from configuration (``requests_per_minute`` / ``tokens_per_minute``
        in the provider's table of ``rxllm.toml``, ``[tool.rxllm]`` or ``RXLLM_*``).
        Every call for the same provider and limits returns the same limiter, so all
        streams to that provider share one budget. A provider built by
        :func:`rxllm.provider` already has a limiter of its own from the same
        settings (``provider.limiter``), applied to each of its streams.

        ``name`` is one of rxllm's vendors (or an alias), or any vendor's
        :class:`~rxllm.vendors.ProviderSpec` (``rxllm.registry.spec(name)`` for a plugin).

        Example:
            >>> limiter = RateLimiter.for_provider("openai")
            >>> stream.pipe(rate_limit(limiter)) if limiter else stream
        """
        from .. import config, vendors

        vendor = name if isinstance(name, vendors.ProviderSpec) else _builtin(name)
        canonical = vendor.name if vendor is not None else str(name)
        aliases = vendor.aliases if vendor is not None else ()
        configured = (settings or config.settings()).provider(canonical, *aliases)
        rpm, tpm = configured.requests_per_minute, configured.tokens_per_minute
        if rpm is None and tpm is None:
            return None
        key = (canonical, rpm, tpm)
        with _configured_lock:
            limiter = _configured.get(key)
            if limiter is None:
                limiter = _configured[key] = cls(requests_per_minute=rpm, tokens_per_minute=tpm)
            return limiter

    def __repr__(self) -> str:
        return (
            f"RateLimiter(requests_per_minute={self.requests_per_minute!r}, "
            f"tokens_per_minute={self.tokens_per_minute!r})"
        )

    def estimate(self, source: Observable[Any]) -> int:
        """The tokens charged up front for one run of ``source``."""
        if isinstance(source, LLMStream):
            request = source.request
            return estimate_prompt_tokens(request) + (request.max_tokens or self.default_max_tokens)
        return self.default_cost

    # -- what rate_limit calls ------------------------------------------------------------

    def _enqueue(self, waiter: _Waiter) -> None:
        with self._lock:
            self._queue.append(waiter)
            self._pump()

    def _cancel(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter.cancelled:
                return
            waiter.cancelled = True
            if waiter in self._queue:
                self._queue.remove(waiter)
                self._pump()
            elif waiter.granted and not waiter.started:
                # Granted but never sent: give its request and tokens back.
                now = _clock(waiter.scheduler)
                if self._requests is not None:
                    self._requests.refill(now)
                    self._requests.give(1)
                if self._tokens is not None:
                    self._tokens.refill(now)
                    self._tokens.give(waiter.cost)
                self._pump()

    def _begin(self, waiter: _Waiter) -> bool:
        """Whether a granted waiter may subscribe upstream (false once it was disposed)."""
        with self._lock:
            if waiter.cancelled:
                return False
            waiter.started = True
            return True

    def _settle(self, estimated: int, actual: int, scheduler: abc.SchedulerBase) -> None:
        """Correct a charge once the real usage is known."""
        with self._lock:
            if self._tokens is None:
                return
            self._tokens.refill(_clock(scheduler))
            if actual < estimated:
                self._tokens.give(estimated - actual)
            else:
                self._tokens.take(actual - estimated)
            self._pump()

    def _pause(self, seconds: float, scheduler: abc.SchedulerBase) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, _clock(scheduler) + seconds)
            self._pump()

    def _pump(self) -> None:
        """Start every waiter at the head of the queue that fits; arm a timer for the next.

        Called under ``_lock``. The previous timer is released with
        :func:`release_timers`, never disposed here: disposing a timer of a
        thread-safe loop scheduler from a thread running another loop waits
        for the timer's loop, which may be inside :meth:`_wake` waiting for
        this lock. Scheduling never waits either, so nothing done under the
        lock waits for another thread. A released timer that fires anyway
        finds a newer generation and does nothing.
        """
        while self._queue:
            head = self._queue[0]
            now = _clock(head.scheduler)
            wait = self._paused_until - now
            if self._requests is not None:
                wait = max(wait, self._requests.wait(1, now))
            if self._tokens is not None:
                wait = max(wait, self._tokens.wait(head.cost, now))
            if wait > 0:
                self._timer_generation += 1
                timer = head.scheduler.schedule_relative(
                    wait, self._on_timer, self._timer_generation
                )
                self._replace_timer((head.scheduler, timer))
                return
            self._queue.popleft()
            head.granted = True
            if self._requests is not None:
                self._requests.take(1)
            if self._tokens is not None:
                self._tokens.take(head.cost)
            head.scheduler.schedule(_run, head.start)
        self._timer_generation += 1
        self._replace_timer(None)

    def _replace_timer(self, timer: tuple[abc.SchedulerBase, abc.DisposableBase] | None) -> None:
        previous, self._timer = self._timer, timer
        if previous is not None:
            release_timers(*previous)

    def _on_timer(self, _: abc.SchedulerBase, generation: int | None) -> None:
        if generation is not None:
            self._wake(generation)

    def _wake(self, generation: int) -> None:
        with self._lock:
            if generation == self._timer_generation:
                self._pump()


def rate_limit(
    limiter: RateLimiter,
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Each subscription waits for ``limiter``'s budget before it subscribes upstream.

    Nothing is sent until the shared :class:`RateLimiter` allows one more
    request and the stream's estimated tokens; disposing while waiting gives
    the place in the queue up without ever subscribing. Events pass through
    unchanged; the ``done`` corrects the limiter's token count, and a
    :class:`~rxllm.errors.RateLimitedError` with ``retry_after`` pauses the
    limiter for every stream that shares it (the error itself passes on:
    put ``retry_on_interrupt`` outside ``rate_limit`` to retry it, and the
    retry waits for the limiter too).

    Example:
        >>> limiter = RateLimiter(requests_per_minute=50, tokens_per_minute=40_000)
        >>> provider.stream("Hi").pipe(rate_limit(limiter), retry_on_interrupt(3))

    .. marble::
        :alt: rate_limit (1 request per minute)

        a: -x-D|
        b: -y-D|            (subscribed at the same time as a)
        [ rate_limit ]
        a: -x-D|
        b: ------------y-D| (b's upstream subscribed 60 s later)

    Args:
        limiter: The budget, shared by every stream that should count against it.

    Returns:
        An operator for ``.pipe()``.

    Raises:
        ValueError: When ``limiter`` is not a :class:`RateLimiter`.
    """
    if not isinstance(limiter, RateLimiter):
        raise ValueError(f"rate_limit needs a RateLimiter, got {limiter!r}")

    def operator(source: Observable[StreamEvent], _before: int) -> Observable[StreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[StreamEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            timers = stream_scheduler(scheduler)
            cost = limiter.estimate(source)
            upstream = SingleAssignmentDisposable()
            settled = False

            def on_next(event: StreamEvent) -> None:
                nonlocal settled
                if isinstance(event, DoneEvent) and not settled:
                    settled = True
                    limiter._settle(cost, event.usage.total_tokens, timers)
                observer.on_next(event)

            def on_error(error: Exception) -> None:
                if isinstance(error, RateLimitedError) and error.retry_after:
                    limiter._pause(error.retry_after, timers)
                observer.on_error(error)

            def start() -> None:
                if not limiter._begin(waiter):
                    return  # disposed after the grant: _cancel refunded it
                upstream.disposable = source.subscribe(
                    on_next, on_error, observer.on_completed, scheduler=scheduler
                )

            waiter = _Waiter(cost, timers, start)
            limiter._enqueue(waiter)

            def dispose() -> None:
                limiter._cancel(waiter)
                upstream.dispose()

            return Disposable(dispose)

        return Observable(subscribe)

    return staged(operator)


def _builtin(name: str) -> ProviderSpec | None:
    """rxllm's own vendor called ``name`` or an alias of it (not a plugin: see for_provider)."""
    from ..vendors import BUILTIN_SPECS

    key = name.strip().lower()
    return next((spec for spec in BUILTIN_SPECS if key in spec.names), None)


# Limiters built from configuration, one per (provider, limits): shared process-wide.
_configured: dict[tuple[str, float | None, float | None], RateLimiter] = {}
_configured_lock = threading.Lock()

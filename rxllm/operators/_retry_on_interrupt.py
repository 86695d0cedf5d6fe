"""``retry_on_interrupt``: retry retryable failures, resuming a cut stream where it stopped."""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable, SingleAssignmentDisposable

from .. import errors
from ..errors import RxllmError
from ..events import (
    DoneEvent,
    FinishReason,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    Usage,
)
from ..metering import USAGE_ESTIMATED, UsageMeter
from ..scheduling import stream_scheduler
from ..stream import LLMStream, NotResumableWarning, applied_as_is
from ..tracing import current_span, record_retry

__all__ = ["Backoff", "retry_on_interrupt"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between retries, in seconds.

    The n-th retry waits ``min(maximum, initial * multiplier ** (n - 1))``, of
    which a random share of up to ``jitter`` is taken off (``jitter=0`` waits
    exactly that long; ``jitter=1`` is "full jitter"). The wait is never
    shorter than the ``retry_after`` the server asked for, even above
    ``maximum``.

    Example:
        >>> Backoff(initial=1, multiplier=2, jitter=0).delay(3)
        4.0
        >>> Backoff(initial=1, jitter=0).delay(1, retry_after=7.5)
        7.5
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        for name in ("initial", "maximum", "multiplier", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise ValueError(f"Backoff.{name} must be a number, got {value!r}")
        if self.initial < 0:
            raise ValueError(f"Backoff.initial must be >= 0 seconds, got {self.initial!r}")
        if self.maximum < self.initial:
            raise ValueError(
                f"Backoff.maximum ({self.maximum!r}) must be >= initial ({self.initial!r})"
            )
        if self.multiplier < 1:
            raise ValueError(f"Backoff.multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff.jitter must be between 0 and 1, got {self.jitter!r}")

    def delay(
        self,
        retry: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        wait = min(self.maximum, self.initial * self.multiplier ** max(0, retry - 1))
        if self.jitter:
            wait -= wait * self.jitter * (rng or _rng).random()
        return max(float(wait), retry_after or 0.0)


_rng = random.Random()

# A ``done`` with one of these finish reasons may be the first half of "done, then error":
# ``timeout`` emits its done (usage so far) before its TimeoutError, and ``cancel_when``
# does the same for a trigger that fails. Such a done is held back until the attempt
# ends. ``token_limit`` (take_tokens) and ``cancelled`` (cancel_when) are followed by
# completion: they are final and pass at once, like the provider's own done.
_PROVISIONAL = frozenset({FinishReason.TIMEOUT, FinishReason.ERROR})


def retry_on_interrupt(
    max_attempts: int = 3,
    backoff: Backoff | float = Backoff(),
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Retry retryable failures; resume a stream that was cut after it produced text.

    Retryable errors are those with ``error.retryable``: rate limited,
    overloaded, server error, interrupted, and ``TimeoutError`` of phase
    ``idle``. Anything else (authentication, invalid request, a bug) passes
    straight through, as does the last error once ``max_attempts`` attempts
    (the first one included) have failed.

    - **Before any output**: wait (``backoff``, never less than the error's
      ``retry_after``) and subscribe to the source again.
    - **After output, on an** :class:`~rxllm.stream.LLMStream` (what
      ``provider.stream(...)`` returns; ``LLMStream.pipe`` keeps it one through
      rxllm's and standard ReactiveX operators alike): subscribe to
      ``source.continued(text_so_far, tokens_used=...)``, which asks the same
      provider to continue after the text already delivered (assistant
      prefill). The consumer sees one seamless stream: no text repeated, none
      lost.
    - **After output, on any other Observable**: subscribe to the source
      again and check that it reproduces the text already delivered; the
      matching prefix is skipped and the rest delivered. If the new attempt
      diverges from that text (or ends before reaching its end), the error
      that caused the retry is raised.

    Reasoning events of a retry that follows delivered output are dropped:
    they are the model thinking afresh about a different (prefilled) prompt
    and would interleave with text already shown. Their tokens still count
    in usage.

    - **After an operator that changed the event type** (``ops.map`` to text,
      ``ops.buffer_with_count``): resuming is impossible, so the source is
      subscribed again from the start and a
      :class:`~rxllm.stream.NotResumableWarning` naming that operator is
      issued once. Place such operators after ``retry_on_interrupt``.

    The stream ends with one ``done``: the last attempt's, with ``usage``
    summed over all attempts. Attempts cut before their own ``done`` are
    estimated (one token per event, prompt from the request) and the
    ``done`` then says ``details["usage_estimated"] = True``; attempts that
    failed before any output (a 429, say) count as free.
    ``details["attempts"]`` tells how many attempts it took when more than one.

    Composes with :func:`~rxllm.operators.timeout` placed before it: the
    ``done`` (finish reason ``timeout`` or ``error``) that an operator emits
    just before its error is held back until the attempt ends. If a retryable
    error follows (an ``idle`` timeout), that ``done`` is not delivered: its
    usage so far is added to the next attempt's, so the consumer still sees
    one stream with one final ``done``. Otherwise it is delivered (with the
    summed usage) followed by the error, or by completion. ``token_limit``
    and ``cancelled`` dones end the reply and pass at once.

    Waits run on :func:`~rxllm.operators._scheduling.stream_scheduler`: the
    scheduler given to ``subscribe``, else the running asyncio loop.

    Example:
        >>> provider.stream("Tell me a story").pipe(
        ...     retry_on_interrupt(3, backoff=Backoff(initial=0.5, maximum=10))
        ... )

    .. marble::
        :alt: retry_on_interrupt

        first:   -a-b-#           (interrupted)
        second:        -c-d-D|    (source.continued("ab"))
        [   retry_on_interrupt(2)   ]
                 -a-b---c-d-D|    (D: usage of both attempts)

    Args:
        max_attempts: Attempts in all, the first one included (>= 1).
        backoff: A :class:`Backoff`, or a number of seconds for a fixed wait.

    Returns:
        An operator for ``.pipe()``.

    Raises:
        ValueError: ``max_attempts < 1`` or a negative fixed backoff.
    """
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(
            f"retry_on_interrupt: max_attempts must be an int >= 1, got {max_attempts!r}"
        )
    policy = _as_backoff(backoff)

    def retrying(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[StreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            return _Retrying(source, observer, scheduler, max_attempts, policy).start()

        return Observable(subscribe)

    def operator(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        # On the whole stream, not as a stage (it asks the stream itself to continue),
        # and still an LLMStream, so what follows knows the provider and request.
        if isinstance(source, LLMStream):
            return source.around(retrying)
        return retrying(source)

    return applied_as_is(operator)


def _as_backoff(backoff: Backoff | float) -> Backoff:
    if isinstance(backoff, Backoff):
        return backoff
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not backoff >= 0:
        raise ValueError(
            f"retry_on_interrupt: backoff must be a Backoff or seconds >= 0, got {backoff!r}"
        )
    return Backoff(initial=backoff, maximum=backoff, multiplier=1, jitter=0)


class _Retrying:
    """One subscription to ``retry_on_interrupt``: its attempts, delivered text and usage."""

    def __init__(
        self,
        source: Observable[StreamEvent],
        observer: abc.ObserverBase[StreamEvent],
        scheduler: abc.SchedulerBase | None,
        max_attempts: int,
        backoff: Backoff,
    ) -> None:
        self.source = source
        self.observer = observer
        self.scheduler = scheduler
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.current = SerialDisposable()
        self.attempt = 0
        self.delivered: list[str] = []
        self.delivered_any = False
        self.delivered_other = False  # items that are neither text nor reasoning nor done
        self.warned = False
        # Tool calls: those delivered whole (by index), the one cut inside its arguments,
        # and the calls that were restarted from their first fragment.
        self.calls_done: set[int] = set()
        self.open_call: int | None = None
        self.restarted_calls: list[int] = []
        # Zero, and priced at zero: a sum whose parts all have a cost keeps one.
        self.past_usage = Usage(cost=0.0)
        self.past_estimated = False
        self.cause: Exception | None = None
        # The caller's span when subscribed (tracing on): each retry is an event on it.
        self.span = current_span()

    def start(self) -> abc.DisposableBase:
        self._run_attempt()
        return self.current

    def _run_attempt(self) -> None:
        self.attempt += 1
        text = "".join(self.delivered)
        source = self.source
        prefix = ""
        if text and isinstance(source, LLMStream):
            source = source.continued(
                text,
                tokens_used=self.past_usage.completion_tokens,
                token_events=len(self.delivered),
            )
        elif text:
            prefix = text
        meter = UsageMeter(source)
        matched = 0
        drop_reasoning = self.delivered_any
        done = False  # this attempt was given up: it diverged from the delivered text
        finished = False  # this attempt's ``done`` was delivered
        held: DoneEvent | None = None  # a timeout/error done waiting to see what follows
        subscription = SingleAssignmentDisposable()
        self.current.disposable = subscription

        def release_held() -> None:
            """Deliver the held ``done``: the attempt ended without a retry."""
            nonlocal held, finished
            if held is not None:
                event, held = held, None
                finished = True
                self.observer.on_next(self._final(event, meter))

        def on_next(event: StreamEvent) -> None:
            nonlocal matched, done, finished, held
            if done:
                return
            release_held()  # a done followed by more events was final after all
            meter.observe(event)
            if isinstance(event, TokenEvent):
                rest = event.text
                if matched < len(prefix):
                    n = min(len(rest), len(prefix) - matched)
                    if rest[:n] != prefix[matched : matched + n]:
                        self._diverged()
                        done = True
                        return
                    matched += n
                    rest = rest[n:]
                    if not rest:
                        return
                    event = TokenEvent(rest)
                self.delivered.append(rest)
                self.delivered_any = True
                self.observer.on_next(event)
            elif isinstance(event, ReasoningEvent):
                if not drop_reasoning:
                    self.delivered_any = True
                    self.observer.on_next(event)
            elif isinstance(event, ToolCallDeltaEvent | ToolCallEvent):
                # A resumed reply makes its calls again: those delivered whole are not
                # repeated; a call cut inside its arguments starts again from its first
                # fragment (which carries its id), as nothing can prefill half a call.
                if event.index in self.calls_done:
                    return
                if isinstance(event, ToolCallEvent):
                    self.calls_done.add(event.index)
                    self.open_call = None
                else:
                    self.open_call = event.index
                self.delivered_any = True
                self.observer.on_next(event)
            elif isinstance(event, DoneEvent):
                if matched < len(prefix):
                    self._diverged()
                    done = True
                    return
                if event.finish_reason in _PROVISIONAL:
                    held = event
                    return
                finished = True
                self.observer.on_next(self._final(event, meter))
            else:
                self.delivered_other = True
                self.observer.on_next(event)

        def on_error(error: Exception) -> None:
            if done:
                return
            if finished:  # the reply is complete: nothing left to retry
                self.observer.on_error(error)
                return
            if self._retry(error, meter, held):
                return
            release_held()
            self.observer.on_error(error)

        def on_completed() -> None:
            if done:
                return
            if matched < len(prefix):
                self._diverged()
                return
            release_held()
            self.observer.on_completed()

        subscription.disposable = source.subscribe(
            on_next, on_error, on_completed, scheduler=self.scheduler
        )

    def _final(self, event: DoneEvent, meter: UsageMeter) -> DoneEvent:
        if self.attempt == 1:
            return event
        details: dict[str, Any] = {**event.details, "attempts": self.attempt}
        if self.restarted_calls:
            details["tool_calls_restarted"] = list(self.restarted_calls)
        if self.past_estimated:
            details[USAGE_ESTIMATED] = True
        return DoneEvent(
            usage=self.past_usage + meter.usage(),
            finish_reason=event.finish_reason,
            model=event.model,
            provider=event.provider,
            details=details,
        )

    def _retry(self, error: Exception, meter: UsageMeter, held: DoneEvent | None) -> bool:
        """Schedule the next attempt after ``error``; false when it is not to be retried.

        ``held`` is the ``done`` an operator emitted just before ``error`` (a
        timeout's, with the usage so far): its usage is this attempt's.
        """
        retryable = isinstance(error, RxllmError) and error.retryable
        if not retryable or self.attempt >= self.max_attempts:
            return False
        self.cause = error
        if self.open_call is not None:
            self.restarted_calls.append(self.open_call)
            self.open_call = None
        self._warn_if_replaying()
        if held is not None:
            self.past_usage += held.usage
            estimated = bool(held.details.get(USAGE_ESTIMATED))
        else:
            self.past_usage += meter.usage(silent_is_free=True)
            estimated = meter.estimated and meter.produced
        self.past_estimated = self.past_estimated or estimated
        retry_after = error.retry_after if isinstance(error, RxllmError) else None
        wait = self.backoff.delay(self.attempt, retry_after=retry_after)
        record_retry(self.span, self.attempt + 1, error, wait)
        timers = stream_scheduler(self.scheduler)
        self.current.disposable = timers.schedule_relative(wait, lambda _s, _t: self._run_attempt())
        return True

    def _warn_if_replaying(self) -> None:
        """Say so (once) when output was delivered and the next attempt can only replay it."""
        if self.warned or not (self.delivered_any or self.delivered_other):
            return
        culprit = self.source.not_resumable_because if isinstance(self.source, LLMStream) else None
        if culprit is None:
            return
        self.warned = True
        warnings.warn(
            f"retry_on_interrupt cannot resume this stream: {culprit} before it changes the "
            f"event type, so the request is sent again from the start and its output is "
            f"delivered again; put {culprit} after retry_on_interrupt to resume instead",
            NotResumableWarning,
            stacklevel=2,
        )

    def _diverged(self) -> None:
        """A restarted (non-LLMStream) source did not reproduce the delivered text."""
        self.current.disposable = Disposable()  # disposes the diverging attempt
        self.observer.on_error(
            self.cause or errors.StreamInterruptedError("the retried stream diverged")
        )

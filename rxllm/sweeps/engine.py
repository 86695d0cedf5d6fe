"""The local engine: run a sweep's rows on one event loop, a bounded number per provider.

Each provider gets ``concurrency`` workers that take its rows in turn, so one
slow or rate-limited provider never holds up the others, and no more than
``concurrency`` of its streams are open at once. A row is one stream:

    LLMStream(provider, request)
        .pipe(<the rate gate>, *operators, retry_on_interrupt(attempts), ...)

The rate gate is the provider's shared :class:`~rxllm.operators.RateLimiter`
(the configured limits, or ``rate_limits=``) here, and the cluster-wide actor
on Ray; it sits before ``retry_on_interrupt`` so every attempt waits for it.
The row's clock starts when its request is sent, after the gate: time waiting
for the limit is not time to first token. A row that fails is recorded with
its error class and message and the others go on. Before each row starts the
budget is checked; once it is reached no row starts and the workers stop.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable

from ..consume import aiter as iterate_events
from ..errors import RxllmError
from ..events import DoneEvent, ErrorEvent, ReasoningEvent, StreamEvent, TokenEvent
from ..metering import USAGE_ESTIMATED, UsageMeter, estimate_prompt_tokens
from ..operators import Backoff, retry_on_interrupt
from ..provider import Provider, StreamOperator
from ..redaction import redact
from ..request import StreamRequest
from ..stream import LLMStream
from .budget import Budget, Prices
from .store import request_json

__all__ = ["GateFor", "RowRunner", "WorkItem", "gate", "run_items", "worker_name"]

Gate = Callable[[Observable[StreamEvent]], Observable[StreamEvent]]
GateFor = Callable[[StreamRequest], Gate]
"""The gate of one row's stream, given its request (a cluster limit charges its tokens)."""


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One row of work: a request for one model."""

    key: str
    index: int
    """The prompt's position in the sweep's prompts."""
    model: str
    """``"provider:model"`` (knobs included)."""
    request: StreamRequest

    @property
    def provider(self) -> str:
        return self.model.partition(":")[0]


def worker_name() -> str:
    """``"host:pid"``: which process ran a row (on Ray, which worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def prompt_text(request: StreamRequest) -> str:
    """The row's prompt as one readable string: the prompt, else the last user turn."""
    if request.prompt is not None:
        return request.prompt
    users = [m for m in request.conversation() if m.role == "user"]
    return users[-1].text if users else ""


def _first_line(error: BaseException) -> str:
    """The error's message, first line (its class is a column of its own)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else repr(error)


def gate(acquire: Callable[[], Awaitable[None]]) -> Gate:
    """An operator: each subscription awaits ``acquire()`` on the running loop, then
    subscribes upstream; disposing while it waits cancels the wait and sends nothing."""

    def operator(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[StreamEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            upstream = SerialDisposable()

            async def wait_then_start() -> None:
                try:
                    await acquire()
                except Exception as error:  # the gate itself failed: this row's error
                    observer.on_error(error)
                    return
                upstream.disposable = source.subscribe(observer, scheduler=scheduler)

            task = asyncio.get_running_loop().create_task(wait_then_start())

            def dispose() -> None:
                task.cancel()
                upstream.dispose()

            return Disposable(dispose)

        return reactivex.create(subscribe)

    return operator


class RowRunner:
    """Runs one row to its end and returns it as a store row (a dict); never raises for
    the row's own failure (that is the row's result).

    ``providers`` by ``"provider:model"``; ``gates`` by provider name (a vendor's
    limit is shared by all its models).
    """

    def __init__(
        self,
        providers: Mapping[str, Provider[Any]],
        *,
        operators: Sequence[StreamOperator] = (),
        attempts: int = 3,
        backoff: Backoff | float | None = None,
        gates: Mapping[str, GateFor] | None = None,
        budget: Budget | None = None,
        worker: str | None = None,
        after: Sequence[StreamOperator] = (),
    ) -> None:
        self.providers = providers
        self.operators = tuple(operators)
        self.attempts = attempts
        self.backoff = backoff
        self.gates = dict(gates or {})
        self.budget = budget
        self.worker = worker or worker_name()
        self.after = tuple(after)
        self._prices: dict[str, Prices] = {}

    def _stream(self, item: WorkItem, sent: list[float]) -> Observable[StreamEvent]:
        stream: Observable[StreamEvent] = LLMStream(self.providers[item.model], item.request)

        def mark(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
            def start(_: abc.SchedulerBase | None) -> Observable[StreamEvent]:
                if not sent:
                    sent.append(time.perf_counter())
                return source

            return reactivex.defer(start)

        stages: list[StreamOperator] = [mark]
        if item.provider in self.gates:
            stages.append(self.gates[item.provider](item.request))
        stages.extend(self.operators)
        if self.attempts > 1:
            backoff = self.backoff if self.backoff is not None else Backoff()
            stages.append(retry_on_interrupt(self.attempts, backoff))
        stages.extend(self.after)
        return stream.pipe(*stages)

    def _price(self, item: WorkItem) -> Prices:
        prices = self._prices.get(item.model)
        if prices is None:
            provider, _, model = item.model.partition(":")
            prices = self._prices[item.model] = Prices(provider, model)
        return prices

    async def run(self, item: WorkItem) -> dict[str, Any]:
        sent: list[float] = []
        stream = self._stream(item, sent)
        meter = UsageMeter(LLMStream(self.providers[item.model], item.request))
        prices = self._price(item)
        prompt_estimate = estimate_prompt_tokens(item.request)
        text: list[str] = []
        reasoning: list[str] = []
        first: float | None = None
        last: float | None = None
        tokens = 0
        done: DoneEvent | None = None
        error: BaseException | None = None
        started_at = _now()
        try:
            async with iterate_events(stream) as events:
                async for event in events:
                    meter.observe(event)
                    if isinstance(event, TokenEvent):
                        last = time.perf_counter()
                        first = first if first is not None else last
                        tokens += 1
                        text.append(event.text)
                        if self.budget is not None:
                            self.budget.running(item.key, prices.estimate(prompt_estimate, tokens))
                    elif isinstance(event, ReasoningEvent):
                        reasoning.append(event.text)
                    elif isinstance(event, DoneEvent):
                        done = event
                    elif isinstance(event, ErrorEvent):
                        error = event.error
                        break
        except asyncio.CancelledError:
            if self.budget is not None:
                self.budget.abandoned(item.key)
            raise
        except Exception as failure:
            error = failure
        end = time.perf_counter()
        if error is None and done is None:
            error = RuntimeError("the stream ended without a done event")
        if done is not None and error is None:
            usage = done.usage
            estimated = bool(done.details.get(USAGE_ESTIMATED))
            attempts = int(done.details.get("attempts", 1))
        else:
            usage = meter.usage(silent_is_free=True)
            estimated = True
            # retry_on_interrupt retries a retryable error until its attempts run out, and
            # gives up on any other at once.
            retried = isinstance(error, RxllmError) and error.retryable
            attempts = self.attempts if retried else 1
        cost = usage.cost
        if cost is None and prices.known:
            cost = prices.estimate(usage.prompt_tokens, usage.completion_tokens)
        if self.budget is not None:
            self.budget.finished(item.key, cost)
        start = sent[0] if sent else end
        tps = None
        if first is not None and last is not None and tokens > 1 and last > first:
            tps = (tokens - 1) / (last - first)
        return {
            "key": item.key,
            "prompt_index": item.index,
            "prompt": prompt_text(item.request),
            "model": item.model,
            "provider": item.provider,
            "status": "ok" if error is None else "error",
            "text": "".join(text),
            "reasoning": "".join(reasoning),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "total_tokens": usage.total_tokens,
            "cost_usd": cost,
            "usage_estimated": int(estimated),
            "ttft_s": None if first is None else first - start,
            "tokens_per_s": tps,
            "elapsed_s": end - start,
            "tokens": tokens,
            "finish_reason": str(done.finish_reason) if done is not None and not error else None,
            "error_class": None if error is None else type(error).__name__,
            "error_message": None if error is None else redact(_first_line(error)),
            "attempts": attempts,
            "worker": self.worker,
            "started_at": started_at,
            "finished_at": _now(),
            "request": request_json(item.request),
        }


async def run_items(
    items: Sequence[WorkItem],
    runner: RowRunner,
    *,
    concurrency: int,
    on_row: Callable[[dict[str, Any]], None],
    may_start: Callable[[], bool | Awaitable[bool]] = lambda: True,
) -> bool:
    """Run ``items``, ``concurrency`` at a time per provider; ``on_row`` gets each finished
    row. Returns whether ``may_start`` stopped the sweep (rows were left unstarted)."""
    queues: dict[str, list[WorkItem]] = defaultdict(list)
    for item in reversed(items):
        queues[item.provider].append(item)  # popped from the end: in the items' order
    stopped = False

    async def worker(queue: list[WorkItem]) -> None:
        nonlocal stopped
        while queue and not stopped:
            allowed = may_start()
            if not isinstance(allowed, bool):
                allowed = await allowed
            if not allowed:
                stopped = True
                return
            if not queue or stopped:
                return
            on_row(await runner.run(queue.pop()))

    async with asyncio.TaskGroup() as group:
        for queue in queues.values():
            for _ in range(min(concurrency, len(queue))):
                group.create_task(worker(queue))
    return stopped

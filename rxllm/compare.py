"""Fan one request out to several models and watch them side by side.

``compare(prompt, models=[...])`` returns a :class:`Comparison`: an
``Observable[LaneEvent]`` (cold: every subscription starts every lane) in which
each event is tagged with its lane and a snapshot of that lane's live metrics.
A lane that fails delivers its error in-band (``ErrorEvent``) and ends; the
others go on. Disposing the subscription stops every lane and closes every
connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .events import (
    DoneEvent,
    ErrorEvent,
    FinishReason,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    ToolCallEvent,
    Usage,
)
from .request import StreamRequest

if TYPE_CHECKING:
    from .provider import Provider
    from .usage import UsageTracker

__all__ = ["Comparison", "LaneEvent", "LaneMetrics", "LaneResult", "compare"]


@dataclass(frozen=True, slots=True)
class LaneMetrics:
    """One lane's live numbers. Times are seconds since the lane started."""

    lane: str
    provider: str
    model: str
    tokens: int = 0
    chars: int = 0
    reasoning_chars: int = 0
    first_token: float | None = None
    elapsed: float = 0.0
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    error: str | None = None
    tool_calls: tuple[str, ...] = ()
    """The tools the lane's reply called, in order (``name(arguments)``, one line each)."""

    @classmethod
    def empty(cls, lane: str) -> LaneMetrics:
        """A lane's numbers before its first event (``lane`` is ``"provider:model"``)."""
        provider, _, model = lane.partition(":")
        return cls(lane=lane, provider=provider, model=model)

    @property
    def tokens_per_second(self) -> float | None:
        """Token events per second after the first token (``None`` until there are two)."""
        if self.first_token is None or self.tokens < 2:
            return None
        span = self.elapsed - self.first_token
        return (self.tokens - 1) / span if span > 0 else None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None or self.error is not None

    def row(self) -> dict[str, Any]:
        """A plain summary row (for tables, CSV, or a pandas DataFrame)."""
        usage = self.usage
        return {
            "lane": self.lane,
            "provider": self.provider,
            "model": self.model,
            "ttft_s": None if self.first_token is None else round(self.first_token, 3),
            "tokens_per_s": None
            if self.tokens_per_second is None
            else round(self.tokens_per_second, 1),
            "tokens": self.tokens,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "reasoning_tokens": usage.reasoning_tokens if usage else None,
            "total_tokens": usage.total_tokens if usage else None,
            "cost_usd": usage.cost if usage else None,
            "elapsed_s": round(self.elapsed, 3),
            "finish_reason": str(self.finish_reason) if self.finish_reason else None,
            "tool_calls": "; ".join(self.tool_calls) or None,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class LaneEvent:
    """A stream event of one lane, with that lane's metrics after it."""

    lane: str
    event: StreamEvent
    metrics: LaneMetrics


@dataclass(frozen=True, slots=True)
class LaneResult:
    """One lane of a finished comparison: its whole text, reasoning and final metrics."""

    lane: str
    text: str
    reasoning: str
    metrics: LaneMetrics

    @property
    def usage(self) -> Usage | None:
        return self.metrics.usage

    @property
    def error(self) -> str | None:
        """The lane's error, one line (``None`` when it finished)."""
        return self.metrics.error


def _advance(metrics: LaneMetrics, event: StreamEvent, elapsed: float) -> LaneMetrics:
    if isinstance(event, TokenEvent):
        return replace(
            metrics,
            tokens=metrics.tokens + 1,
            chars=metrics.chars + len(event.text),
            first_token=metrics.first_token if metrics.first_token is not None else elapsed,
            elapsed=elapsed,
        )
    if isinstance(event, DoneEvent):
        return replace(
            metrics,
            usage=event.usage,
            finish_reason=event.finish_reason,
            provider=event.provider or metrics.provider,
            model=event.model or metrics.model,
            elapsed=elapsed,
        )
    if isinstance(event, ErrorEvent):
        return replace(metrics, error=one_line(event.error), elapsed=elapsed)
    if isinstance(event, ReasoningEvent):
        return replace(
            metrics, reasoning_chars=metrics.reasoning_chars + len(event.text), elapsed=elapsed
        )
    if isinstance(event, ToolCallEvent):
        return replace(metrics, tool_calls=(*metrics.tool_calls, call_line(event)), elapsed=elapsed)
    return replace(metrics, elapsed=elapsed)


def call_line(call: ToolCallEvent) -> str:
    """``get_weather({"city": "Oslo"})``: a tool call on one line (arguments cut at 80)."""
    arguments = json.dumps(dict(call.arguments), ensure_ascii=False)
    if len(arguments) > 80:
        arguments = arguments[:79] + "…"
    where = " [server]" if call.server_side else ""
    return f"{call.name}({arguments}){where}"


def one_line(error: BaseException) -> str:
    """``"OverloadedError: anthropic:claude-… [529] Overloaded"``: an error for a lane or a
    terminal line (its class and the first line of its message)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _lane(
    name: str, stream: Observable[StreamEvent], clock: Callable[[], float]
) -> Observable[LaneEvent]:
    from .operators import errors_as_events

    def subscribe(
        observer: abc.ObserverBase[LaneEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        start = clock()
        metrics = LaneMetrics.empty(name)

        def on_next(event: StreamEvent) -> None:
            nonlocal metrics
            metrics = _advance(metrics, event, clock() - start)
            observer.on_next(LaneEvent(name, event, metrics))

        return stream.pipe(errors_as_events()).subscribe(
            on_next, observer.on_error, observer.on_completed, scheduler=scheduler
        )

    return reactivex.create(subscribe)


class Comparison(Observable[LaneEvent]):
    """The lanes of a fan-out, as one cold ``Observable[LaneEvent]``.

    Every subscription keeps its own metrics (and each ``LaneEvent`` carries its
    lane's). ``latest`` is the most recent subscription's: each lane's most
    recent metrics in that run, so ``summary()`` after a run gives its final
    table. An earlier subscription still running never writes into it, and
    ``collect()`` returns the metrics of its own run.
    """

    def __init__(
        self,
        streams: dict[str, Observable[StreamEvent]],
        clock: Callable[[], float] = time.perf_counter,
        *,
        owned: Sequence[Provider[Any]] = (),
    ) -> None:
        super().__init__()
        self.streams = streams
        self.clock = clock
        self.latest: dict[str, LaneMetrics] = {}
        self._owned = list(owned)

    async def aclose(self) -> None:
        """Close the providers ``compare`` built from ``"provider:model"`` strings.

        Bound models passed in are the caller's to close. Also ``async with``.
        """
        owned, self._owned = self._owned, []
        for provider in owned:
            await provider.aclose()

    async def __aenter__(self) -> Comparison:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def lanes(self) -> list[str]:
        return list(self.streams)

    def _subscribe_core(
        self, observer: abc.ObserverBase[LaneEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return self._run({}).subscribe(observer, scheduler=scheduler)

    def _run(self, metrics: dict[str, LaneMetrics]) -> Observable[LaneEvent]:
        """The lanes, keeping each lane's latest metrics of each subscription in ``metrics``
        (which becomes ``latest``)."""

        def subscribe(
            observer: abc.ObserverBase[LaneEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            metrics.update((name, LaneMetrics.empty(name)) for name in self.streams)
            self.latest = metrics

            def remember(event: LaneEvent) -> None:
                metrics[event.lane] = event.metrics

            merged = reactivex.merge(
                *(_lane(name, stream, self.clock) for name, stream in self.streams.items())
            )
            return merged.pipe(ops.do_action(remember)).subscribe(observer, scheduler=scheduler)

        return reactivex.create(subscribe)

    async def collect(self) -> dict[str, LaneResult]:
        """Run every lane to its end on the running loop; each lane's result by name.

        A failing lane's result carries its error (``result.error``); the
        others are unaffected. Cancelling the awaiting task stops every lane.
        """
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        texts: dict[str, list[str]] = {name: [] for name in self.streams}
        thoughts: dict[str, list[str]] = {name: [] for name in self.streams}

        def on_next(item: LaneEvent) -> None:
            if isinstance(item.event, TokenEvent):
                texts[item.lane].append(item.event.text)
            elif isinstance(item.event, ReasoningEvent):
                thoughts[item.lane].append(item.event.text)

        def on_error(error: Exception) -> None:
            if not ended.done():
                ended.set_exception(error)

        def on_completed() -> None:
            if not ended.done():
                ended.set_result(None)

        metrics: dict[str, LaneMetrics] = {}  # this run's, whatever other subscriptions do
        subscription = self._run(metrics).subscribe(
            on_next, on_error, on_completed, scheduler=AsyncIOScheduler(loop)
        )
        try:
            await ended
        finally:
            subscription.dispose()
        return {
            name: LaneResult(name, "".join(texts[name]), "".join(thoughts[name]), lane_metrics)
            for name, lane_metrics in metrics.items()
        }

    def summary(self) -> list[dict[str, Any]]:
        """One plain row per lane (see :meth:`LaneMetrics.row`)."""
        return [self.latest[name].row() for name in self.streams if name in self.latest]

    def to_dataframe(self) -> Any:
        """The summary as a pandas DataFrame (needs pandas, which rxllm does not require)."""
        try:
            import pandas as pd  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("to_dataframe() needs pandas: pip install pandas") from error
        return pd.DataFrame(self.summary()).set_index("lane")

    def __repr__(self) -> str:
        return f"<Comparison {', '.join(self.streams)}>"


def compare(
    prompt_or_request: str | StreamRequest | None = None,
    models: Sequence[Any] = (),
    *,
    usage_tracker: UsageTracker | None = None,
    tag: str | None = None,
    **request_fields: Any,
) -> Comparison:
    """Fan one request out to several models; lanes fail alone, dispose stops them all.

    Args:
        prompt_or_request: the prompt, or a request whose ``model`` each lane replaces;
            may be left out when ``prompt=`` or ``messages=`` is given.
        models: ``"provider:model"`` strings, or bound models from ``rxllm.model(...)``
            or ``rxllm.connect(...)``. For strings, ``compare`` builds one provider per
            vendor and owns it: release it with ``await comparison.aclose()`` or
            ``async with compare(...) as comparison:``.
        usage_tracker: counts every lane's usage, under ``tag``
            (``usage_tracker.summary()`` gives the totals across comparisons).
        tag: the tag the lanes count under in ``usage_tracker``.
        **request_fields: any :class:`~rxllm.request.StreamRequest` field for every
            lane (``messages=``, ``max_tokens=``, ``system=``...).

    Example:
        >>> cmp = compare("Explain TCP", models=["anthropic:claude-sonnet-4-6",
        ...                                      "openai:gpt-5-mini"], max_tokens=200)
        >>> results = await cmp.collect()   # or: await rxllm.notebook.show(cmp)
        >>> results["openai:gpt-5-mini"].text
        >>> cmp.summary()
    """
    from .registry import BoundModel
    from .registry import model as bind

    if not models:
        raise ValueError("compare() needs at least one model")
    streams: dict[str, Observable[StreamEvent]] = {}
    built: dict[str, Provider[Any]] = {}  # one provider (one connection pool) per vendor
    for spec in models:
        if isinstance(spec, str):
            bound = bind(spec)
            shared = built.setdefault(bound.provider.name, bound.provider)
            bound = BoundModel(shared, bound.name)
        else:
            bound = spec
        name = f"{bound.provider.name}:{bound.name}"
        if name in streams:
            raise ValueError(f"compare() got {name!r} twice")
        stream: Observable[StreamEvent] = bound.stream(prompt_or_request, **request_fields)
        if usage_tracker is not None:
            stream = stream.pipe(usage_tracker.track(tag))
        streams[name] = stream
    return Comparison(streams, owned=list(built.values()))

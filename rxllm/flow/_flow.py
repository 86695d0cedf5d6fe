"""Steps and ``Flow``: steps run in order over one Context; the first that says no ends it."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from reactivex import Observable
from reactivex.subject import ReplaySubject

from ..bridge import from_async_iterable
from ..redaction import redact
from ..usage import UsageTracker
from ._context import Context, ContextChange

__all__ = [
    "Flow",
    "FlowEvent",
    "FlowResult",
    "FunctionStep",
    "Step",
    "StepLike",
    "abort_signal",
    "current_usage_tracker",
]

logger = logging.getLogger("rxllm.flow")


@runtime_checkable
class Step(Protocol):
    """One unit of a flow (the seed's ``IStep``): reads and writes the context, says
    whether the flow goes on.

    ``execute`` returns ``True`` to go on, ``False`` to stop the flow here; raising stops
    it too, reported as a failure of this step. A step that watches
    :func:`abort_signal` itself sets ``observes_abort = True``; any other step is
    cancelled (``asyncio``) when its flow is aborted.
    """

    name: str

    async def execute(self, context: Context) -> bool: ...


StepFunction: TypeAlias = Callable[[Context], "bool | Awaitable[bool | None] | None"]
StepLike: TypeAlias = "Step | StepFunction"
"""What :class:`Flow` takes: a :class:`Step`, or a plain function (sync or async)."""


class FunctionStep:
    """A plain function (sync or async) as a step: ``None`` or ``True`` goes on, ``False``
    stops the flow. A sync function runs on the event loop, so keep it quick (prompt
    glue, bookkeeping); make slow work ``async`` (``await asyncio.to_thread(...)``).

    :class:`Flow` wraps functions in this by itself; use it to give one another name.
    """

    def __init__(self, function: StepFunction, *, name: str | None = None) -> None:
        if not callable(function):
            raise TypeError(f"a step is a Step or a function of the context, got {function!r}")
        self.function = function
        self.name: str = name or getattr(function, "__name__", None) or repr(function)

    async def execute(self, context: Context) -> bool:
        result = self.function(context)
        if inspect.isawaitable(result):
            result = await result
        return result is not False

    def __repr__(self) -> str:
        return f"FunctionStep({self.name!r})"


@dataclass(frozen=True, slots=True)
class FlowResult:
    """How one run of a flow ended.

    ``status``: ``completed`` (every step returned True), ``stopped`` (a step returned
    False: ``ended_by`` names it, ``reason`` says why when the step left an ``error`` in
    the context), ``failed`` (a step raised: ``error``) or ``aborted`` (:meth:`Flow.abort`
    or the ``abort_when`` trigger).
    """

    status: Literal["completed", "stopped", "failed", "aborted"]
    context: Context
    steps: tuple[str, ...]
    """The names of the steps that started, in order."""
    ended_by: str | None = None
    reason: str | None = None
    error: BaseException | None = None
    usage: UsageTracker | None = None
    """The run's usage by provider, model and tag (a phase, or a step's name)."""

    @property
    def ok(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """What :meth:`Flow.events` emits, per step: ``started``; ``progress`` for each context
    change the step makes (``change``); then one of ``finished`` (``ok``: what it
    returned), ``failed`` (``error``) or ``aborted``. Last comes one ``ended`` with the
    run's :class:`FlowResult` (``step`` is then the step that ended the flow, or ``""``).
    """

    type: Literal["started", "progress", "finished", "failed", "aborted", "ended"]
    step: str
    index: int
    change: ContextChange | None = None
    ok: bool | None = None
    error: BaseException | None = None
    result: FlowResult | None = None


_abort_signal: contextvars.ContextVar[Observable[Any] | None] = contextvars.ContextVar(
    "rxllm_flow_abort", default=None
)
_usage_tracker: contextvars.ContextVar[UsageTracker | None] = contextvars.ContextVar(
    "rxllm_flow_usage", default=None
)


def abort_signal() -> Observable[Any] | None:
    """The running flow's abort trigger (for ``cancel_when``), inside a step; else ``None``.

    It replays: a step that subscribes after the abort sees it at once.
    """
    return _abort_signal.get()


def current_usage_tracker() -> UsageTracker | None:
    """The running flow's usage tracker, inside a step; else ``None``."""
    return _usage_tracker.get()


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name


_STEP_ENDED = _Signal("step ended")
_ABORTED = _Signal("aborted")


class _Run:
    """One run of a flow: its abort trigger, and who to tell on the run's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.trigger: ReplaySubject[str] = ReplaySubject(1)
        self.reason: str | None = None
        self.listeners: list[Callable[[], None]] = []
        self.lock = threading.Lock()

    def abort(self, reason: str) -> None:
        with self.lock:
            if self.reason is not None:
                return
            self.reason = reason
            listeners = list(self.listeners)
        # On the caller's thread: a stream under cancel_when stops (its connection
        # closes) now, whatever the loop is doing.
        self.trigger.on_next(reason)
        for listener in listeners:
            _call_on(self.loop, listener)

    def forget(self, listener: Callable[[], None]) -> None:
        with self.lock:
            if listener in self.listeners:
                self.listeners.remove(listener)

    def listen(self, listener: Callable[[], None]) -> None:
        with self.lock:
            self.listeners.append(listener)
            fired = self.reason is not None
        if fired:
            _call_on(self.loop, listener)


def _call_on(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback()
    else:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to tell
            loop.call_soon_threadsafe(callback)


def step_name(step: Step) -> str:
    return str(getattr(step, "name", None) or type(step).__name__)


class Flow:
    """Steps run in order over one :class:`Context` (the seed's flow system).

    A run stops at the first step that returns ``False`` or raises, and says which step
    ended it and why (:class:`FlowResult`); a step's failure is an outcome, not an
    exception of :meth:`run`. :meth:`abort` (from any thread) or an ``abort_when``
    trigger stops the running step: an :class:`~rxllm.flow.LLMStreamStep` ends its stream
    at once (the connection closes) and keeps its partial text; any other step is
    cancelled. A run is also an Observable of :class:`FlowEvent` (:meth:`events`), so it
    composes and displays like a stream.

    Each run counts usage in a :class:`~rxllm.UsageTracker` (``tracker``, else a new one
    per run), tagged by phase or step name: ``result.usage.summary()``.

    Example:
        >>> flow = Flow([PhaseStep("plan"), lambda c: c.update(prompt=c["final_response"]),
        ...              PhaseStep("implement")])
        >>> result = await flow.run({"prompt": "A CLI that counts words"})
        >>> result.status, result.context["final_response"][:40]
    """

    def __init__(
        self,
        steps: Iterable[StepLike],
        *,
        name: str = "flow",
        tracker: UsageTracker | None = None,
    ) -> None:
        self.steps: tuple[Step, ...] = tuple(_as_step(step) for step in steps)
        self.name = name
        self.tracker = tracker
        self._runs: set[_Run] = set()
        self._lock = threading.Lock()

    def abort(self, reason: str = "aborted") -> None:
        """Stop every run of this flow now, from any thread; the running step ends as
        ``aborted`` and no later step starts."""
        with self._lock:
            runs = list(self._runs)
        for run in runs:
            run.abort(reason)

    async def run(
        self,
        context: Context | Mapping[str, Any] | None = None,
        *,
        abort_when: Observable[Any] | None = None,
    ) -> FlowResult:
        """Run the steps over ``context`` (a :class:`Context`, or initial values).

        Args:
            context: the run's state; a mapping becomes a new :class:`Context`.
            abort_when: an Observable whose first item aborts the run.
        """
        result: FlowResult | None = None
        async with contextlib.aclosing(self._run(as_context(context), abort_when)) as events:
            async for event in events:
                result = event.result or result
        assert result is not None
        return result

    def events(
        self,
        context: Context | Mapping[str, Any] | None = None,
        *,
        abort_when: Observable[Any] | None = None,
    ) -> Observable[FlowEvent]:
        """The run as a cold Observable of :class:`FlowEvent`: each subscription is a run
        (over ``context`` if it is a :class:`Context`, else over a new one made from it);
        disposing it cancels the running step and closes its connection."""
        if context is not None and not isinstance(context, Context | Mapping):
            raise TypeError(f"context must be a Context or a mapping, got {context!r}")
        return from_async_iterable(lambda: self._run(as_context(context), abort_when))

    async def _run(
        self, context: Context, abort_when: Observable[Any] | None
    ) -> AsyncGenerator[FlowEvent, None]:
        run = _Run(asyncio.get_running_loop())
        tracker = self.tracker or UsageTracker()
        with self._lock:
            self._runs.add(run)
        watching = (
            abort_when.subscribe(
                lambda _: run.abort("abort_when fired"),
                lambda error: run.abort(f"abort_when failed: {error}"),
            )
            if abort_when is not None
            else None
        )
        started: list[str] = []
        status: Literal["completed", "stopped", "failed", "aborted"] = "completed"
        ended_by: str | None = None
        reason: str | None = None
        error: BaseException | None = None
        try:
            for index, step in enumerate(self.steps):
                name = step_name(step)
                if run.reason is not None:
                    status, ended_by, reason = "aborted", name, f"{run.reason} (before it started)"
                    break
                started.append(name)
                logger.info("%s: step %r started", self.name, name)
                yield FlowEvent("started", name, index)
                outcome = _Outcome()
                errors_seen: list[str] = []
                async for change in _execute(step, context, run, tracker, outcome):
                    if change.key == "error" and isinstance(change.new, str):
                        errors_seen.append(change.new)
                    yield FlowEvent("progress", name, index, change=change)
                if outcome.error is not None:
                    status, ended_by, error = "failed", name, outcome.error
                    reason = redact(f"{type(error).__name__}: {error}")
                    logger.error("%s: step %r failed: %s", self.name, name, reason)
                    yield FlowEvent("failed", name, index, error=error)
                    break
                if run.reason is not None and not outcome.returned:
                    status, ended_by, reason = "aborted", name, run.reason
                    logger.info("%s: step %r aborted: %s", self.name, name, reason)
                    yield FlowEvent("aborted", name, index)
                    break
                yield FlowEvent("finished", name, index, ok=outcome.returned)
                if not outcome.returned:
                    status, ended_by = "stopped", name
                    reason = errors_seen[-1] if errors_seen else "the step returned False"
                    logger.info("%s: step %r stopped the flow: %s", self.name, name, reason)
                    break
        finally:
            if watching is not None:
                watching.dispose()
            with self._lock:
                self._runs.discard(run)
        result = FlowResult(status, context, tuple(started), ended_by, reason, error, tracker)
        yield FlowEvent("ended", ended_by or "", len(started) - 1, result=result)

    def __repr__(self) -> str:
        return f"Flow({self.name!r}, steps={[step_name(s) for s in self.steps]})"


class _Outcome:
    returned: bool = False
    error: BaseException | None = None


async def _execute(
    step: Step, context: Context, run: _Run, tracker: UsageTracker, outcome: _Outcome
) -> AsyncGenerator[ContextChange, None]:
    """Run one step as a task; yield the context changes it makes while it runs."""
    loop = run.loop
    queue: asyncio.Queue[ContextChange | _Signal] = asyncio.Queue()

    def put(item: ContextChange | _Signal) -> None:
        _call_on(loop, lambda: queue.put_nowait(item))

    subscription = context.changes.subscribe(put)
    scope = contextvars.copy_context()
    scope.run(_abort_signal.set, run.trigger)
    scope.run(_usage_tracker.set, tracker)
    task = loop.create_task(_call(step, context), context=scope)
    task.add_done_callback(lambda _: queue.put_nowait(_STEP_ENDED))

    def aborted() -> None:
        put(_ABORTED)

    if not getattr(step, "observes_abort", False):
        run.listen(aborted)
    try:
        while True:
            item = await queue.get()
            if item is _STEP_ENDED:
                break
            if item is _ABORTED:
                task.cancel()
            elif isinstance(item, ContextChange):
                yield item
    finally:
        subscription.dispose()
        run.forget(aborted)
        if not task.done():
            task.cancel()
    while not queue.empty():  # changes told from other threads just before the end
        item = queue.get_nowait()
        if isinstance(item, ContextChange):
            yield item
    if task.cancelled():
        outcome.returned = False
    elif task.exception() is not None:
        outcome.error = task.exception()
    else:
        outcome.returned = task.result()


async def _call(step: Step, context: Context) -> bool:
    returned = await step.execute(context)
    if not isinstance(returned, bool):
        raise TypeError(
            f"step {step_name(step)!r} returned {returned!r}: a step returns True to go on, "
            "False to stop the flow"
        )
    return returned


def _as_step(step: StepLike) -> Step:
    if isinstance(step, Step):
        return step
    return FunctionStep(step)


def as_context(context: Context | Mapping[str, Any] | None) -> Context:
    if isinstance(context, Context):
        return context
    return Context(context or {})

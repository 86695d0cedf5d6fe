"""Live display of streams and comparisons in Jupyter (Lab, Notebook, VS Code).

``show(stream_or_comparison)`` subscribes and renders into one IPython display
handle that is updated in place: a single stream as growing text, a
comparison as side-by-side columns with each lane's metrics under it.
Redraws are throttled to ``refresh_per_second`` (a few per second, not one per
token); the final state is always drawn. Text is HTML-escaped, reasoning is
shown apart (collapsed), errors appear in their lane. No widget extension is
needed: only ``IPython.display`` handles.

``await show(...)`` waits until the stream ends (use it when a later cell
needs the result); without ``await`` the stream keeps running in the
background on the kernel's event loop. Either way the display is already on
screen, so the value the cell ends with adds no second copy of it; evaluated
in a later cell, a ``Live`` or ``LiveView`` shows a snapshot.
"""

from __future__ import annotations

import asyncio
import html
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from reactivex import Observable, abc
from reactivex.disposable import SerialDisposable

from .compare import Comparison, LaneEvent, LaneMetrics, call_line
from .events import StreamEvent, ToolCallEvent
from .metering import stream_identity
from .scheduling import stream_scheduler
from .stream import LLMStream

__all__ = ["LiveView", "register_display", "show"]


class DisplayHandle(Protocol):
    def update(self, obj: Any) -> None: ...


class _HTML:
    """Minimal rich-display object: what IPython renders as HTML."""

    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return "<rxllm live view>"


@dataclass
class _Lane:
    metrics: LaneMetrics
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)


_STYLE = (
    "<style>.rxllm-lanes{display:flex;gap:12px;align-items:flex-start}"
    ".rxllm-lane{flex:1;min-width:0;border:1px solid #8884;border-radius:6px;padding:8px}"
    ".rxllm-lane h4{margin:0 0 6px 0;font-family:monospace}"
    ".rxllm-text{white-space:pre-wrap;font-family:inherit}"
    ".rxllm-reasoning{opacity:.6;white-space:pre-wrap;font-style:italic}"
    ".rxllm-metrics{font-family:monospace;font-size:85%;opacity:.8;margin-top:6px}"
    ".rxllm-error{color:#c00;font-family:monospace}</style>"
)


def _execution_count() -> int | None:
    """The running IPython cell's number (``None`` outside IPython)."""
    try:
        from IPython import get_ipython  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return None
    shell = get_ipython()  # type: ignore[no-untyped-call,unused-ignore]
    count = getattr(shell, "execution_count", None)
    return count if isinstance(count, int) else None


class LiveView:
    """The state of a display and its HTML; fed events, rendered on demand."""

    def __init__(self, lanes: list[str], *, single: bool) -> None:
        self.single = single
        self.lanes = {name: _Lane(LaneMetrics.empty(name)) for name in lanes}
        self.redraws = 0
        self.failure: str | None = None
        self.shown_in: int | None = None
        """The IPython cell whose output shows this view live."""
        self.stopped = False
        """``Live.stop()`` ended it before the streams did."""

    def text(self, lane: str | None = None) -> str:
        """A lane's text so far (the only lane's, for a single stream)."""
        name = lane if lane is not None else next(iter(self.lanes))
        return "".join(self.lanes[name].text)

    def _ipython_display_(self) -> None:
        # In the cell that shows it live, it is on screen already; later, a snapshot.
        if self.shown_in is not None and self.shown_in == _execution_count():
            return
        from IPython.display import display  # type: ignore[attr-defined,unused-ignore]

        display(_HTML(self.render()))  # type: ignore[no-untyped-call,unused-ignore]

    def _repr_html_(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        lanes = "; ".join(
            f"{name}: {metrics_line(lane.metrics)}" for name, lane in self.lanes.items()
        )
        return f"<LiveView {lanes}>"

    def add(self, lane: str, event: StreamEvent, metrics: LaneMetrics) -> None:
        state = self.lanes.setdefault(lane, _Lane(metrics))
        state.metrics = metrics
        if event.type == "token":
            state.text.append(event.text)
        elif event.type == "reasoning":
            state.reasoning.append(event.text)
        elif isinstance(event, ToolCallEvent):
            state.text.append(f"\n⚙ {call_line(event)}\n")

    def render(self) -> str:
        columns = "".join(self._lane_html(name, lane) for name, lane in self.lanes.items())
        failure = (
            f'<div class="rxllm-error">{html.escape(self.failure)}</div>' if self.failure else ""
        )
        if self.stopped:
            failure += '<div class="rxllm-metrics">stopped</div>'
        return f'{_STYLE}<div class="rxllm-lanes">{columns}</div>{failure}'

    def _lane_html(self, name: str, lane: _Lane) -> str:
        m = lane.metrics
        reasoning = ""
        if lane.reasoning:
            reasoning = (
                '<details><summary>reasoning</summary><div class="rxllm-reasoning">'
                f"{html.escape(''.join(lane.reasoning))}</div></details>"
            )
        error = f'<div class="rxllm-error">{html.escape(m.error)}</div>' if m.error else ""
        title = "" if self.single else f"<h4>{html.escape(name)}</h4>"
        return (
            f'<div class="rxllm-lane">{title}{reasoning}'
            f'<div class="rxllm-text">{html.escape("".join(lane.text))}</div>{error}'
            f'<div class="rxllm-metrics">{html.escape(metrics_line(m))}</div></div>'
        )


def metrics_line(m: LaneMetrics) -> str:
    """``ttft 0.21s · 48.0 tok/s · 120 tokens · $0.0012 · stop`` (what is known so far)."""
    parts: list[str] = []
    if m.first_token is not None:
        parts.append(f"ttft {m.first_token:.2f}s")
    if m.tokens_per_second is not None:
        parts.append(f"{m.tokens_per_second:.1f} tok/s")
    parts.append(f"{m.tokens} tokens")
    if m.usage is not None:
        parts.append(f"usage {m.usage.prompt_tokens}+{m.usage.completion_tokens}")
        if m.usage.cost is not None:
            parts.append(f"${m.usage.cost:.5f}")
    if m.finish_reason is not None:
        parts.append(str(m.finish_reason))
    elif m.error is not None:
        parts.append("error")
    return " · ".join(parts)


class Live:
    """A running display: awaitable until the stream ends; ``stop()`` disposes it."""

    def __init__(self, view: LiveView, done: asyncio.Future[None] | None) -> None:
        self.view = view
        self._done = done
        self._subscription = SerialDisposable()
        self._stopped: Callable[[], None] | None = None

    def stop(self) -> None:
        """Stop the stream(s) (closes their connections); the display shows where they stopped."""
        self._subscription.dispose()
        if self._stopped is not None:
            self._stopped()

    def __await__(self) -> Generator[Any, None, LiveView]:
        if self._done is not None:
            yield from asyncio.shield(self._done).__await__()
        return self.view

    def _ipython_display_(self) -> None:
        self.view._ipython_display_()

    def _repr_html_(self) -> str:
        return self.view.render()

    def __repr__(self) -> str:
        return f"<Live {self.view!r}>"


def _show_when_evaluated(source: Observable[StreamEvent] | Comparison) -> None:
    """Evaluating a stream or a comparison in a cell runs it with the live display."""
    show(source)


def register_display(shell: Any = None) -> bool:
    """Make IPython show an ``LLMStream`` or a ``Comparison`` live when a cell evaluates it.

    Called when this module is imported (``import rxllm`` imports it); call it
    again if IPython started after rxllm was imported. The core types know
    nothing of Jupyter: this registers formatters for them. Returns whether a
    shell was there to register with.
    """
    if shell is None:
        # A running shell has imported IPython; a plain script need not pay for importing it.
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    formatters = getattr(
        getattr(shell, "display_formatter", None), "ipython_display_formatter", None
    )
    if formatters is None:
        return False
    for cls in (LLMStream, Comparison):
        formatters.for_type(cls, _show_when_evaluated)
    return True


def show(
    source: Observable[StreamEvent] | Comparison,
    *,
    refresh_per_second: float = 4.0,
    handle: DisplayHandle | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Live:
    """Render a stream or a comparison live in the cell output.

    Args:
        source: one stream (``Observable[StreamEvent]``) or a ``Comparison``.
        refresh_per_second: the most redraws per second (the final state is always drawn).
        handle: where to draw (default: a new ``IPython.display`` handle).
        scheduler: for the throttle timer (default: the running loop's).

    Example:
        >>> await rxllm.notebook.show(rxllm.compare("Hi", models=[...]))
    """
    if refresh_per_second <= 0:
        raise ValueError("refresh_per_second must be > 0")
    if handle is None:
        from IPython.display import display  # type: ignore[attr-defined,unused-ignore]

        handle = display(_HTML(""), display_id=True)  # type: ignore[no-untyped-call,unused-ignore]
        assert handle is not None
    lanes: Observable[LaneEvent]
    if isinstance(source, Comparison):
        view = LiveView(source.lanes, single=False)
        lanes = source
    else:
        provider, model = stream_identity(source)
        name = f"{provider}:{model}" if provider else "stream"
        view = LiveView([name], single=True)
        lanes = Comparison({name: source})
    view.shown_in = _execution_count()
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    done: asyncio.Future[None] | None = loop.create_future() if loop is not None else None
    live = Live(view, done)
    sched = stream_scheduler(scheduler)
    interval = 1.0 / refresh_per_second
    dirty = False
    pending: abc.DisposableBase | None = None
    target: DisplayHandle = handle

    def draw() -> None:
        nonlocal dirty
        dirty = False
        view.redraws += 1
        target.update(_HTML(view.render()))

    def tick(_: abc.SchedulerBase, __: Any = None) -> None:
        nonlocal pending
        pending = None
        if dirty:
            draw()

    def on_next(item: LaneEvent) -> None:
        nonlocal dirty, pending
        view.add(item.lane, item.event, item.metrics)
        dirty = True
        if pending is None:
            pending = sched.schedule_relative(interval, tick)

    ended = False

    def finish(error: Exception | None = None) -> None:
        nonlocal ended
        if ended:
            return
        ended = True
        if error is not None:
            view.failure = f"{type(error).__name__}: {error}"
        if pending is not None:
            pending.dispose()
        draw()
        if done is not None and not done.done():
            done.set_result(None)

    def stopped() -> None:
        if not ended:
            view.stopped = True
            finish()

    live._stopped = stopped
    draw()
    live._subscription.disposable = lanes.subscribe(on_next, finish, finish, scheduler=scheduler)
    return live


register_display()

"""Live progress of a sweep: rows done and failed per model, spend, ETA.

The engines update a :class:`SweepProgress` (a few counters, no rendering);
a renderer draws it on its own clock, a few times a second, never once per
row: rich's ``Live`` in a terminal, one IPython display handle updated in
place in Jupyter (no widget extension needed). The final state is always
drawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ModelProgress", "SweepProgress", "live_progress", "progress_kind"]

ProgressKind = Literal["notebook", "terminal", "none"]
REFRESH_PER_SECOND = 4


@dataclass
class ModelProgress:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    """Already in the store from an earlier run."""
    cost: float = 0.0


@dataclass
class SweepProgress:
    """Counters the engines update as rows finish."""

    models: dict[str, ModelProgress] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    spent: float = 0.0
    """Dollars over the sweep's rows, earlier runs included."""
    max_cost: float | None = None
    stopped: str | None = None
    """Why the sweep stopped starting rows (the budget), if it did."""

    @classmethod
    def of(cls, models: Sequence[str], *, max_cost: float | None = None) -> SweepProgress:
        return cls(models={m: ModelProgress() for m in models}, max_cost=max_cost)

    def add(self, model: str, *, ok: bool, cost: float | None) -> None:
        entry = self.models.setdefault(model, ModelProgress())
        if ok:
            entry.done += 1
        else:
            entry.failed += 1
        entry.cost += cost or 0.0
        self.spent += cost or 0.0

    @property
    def total(self) -> int:
        return sum(m.total for m in self.models.values())

    @property
    def finished(self) -> int:
        return sum(m.done + m.failed for m in self.models.values())

    @property
    def to_run(self) -> int:
        return sum(m.total - m.skipped for m in self.models.values())

    def eta(self) -> float | None:
        """Seconds until the rows of this run are done, at the pace so far."""
        if self.finished == 0:
            return None
        remaining = self.to_run - self.finished
        return max(0.0, remaining * (time.monotonic() - self.started) / self.finished)

    def lines(self) -> list[tuple[str, str]]:
        """``(model, "12/20 · 1 failed · $0.0012")`` per model: rows finished (failed ones
        included) of its rows."""
        out = []
        for model, m in self.models.items():
            skipped = f" · {m.skipped} from the store" if m.skipped else ""
            out.append(
                (
                    model,
                    f"{m.done + m.failed + m.skipped}/{m.total} · {m.failed} failed{skipped} · "
                    f"${m.cost:.4f}",
                )
            )
        return out

    def headline(self) -> str:
        eta = self.eta()
        left = f" · ETA {eta:.0f}s" if eta is not None and self.finished < self.to_run else ""
        cap = f" of ${self.max_cost:g}" if self.max_cost is not None else ""
        stop = f" · {self.stopped}" if self.stopped else ""
        return f"{self.finished}/{self.to_run} rows · spent ${self.spent:.4f}{cap}{left}{stop}"

    def html(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(model)}</code></td><td>{html.escape(line)}</td></tr>"
            for model, line in self.lines()
        )
        return (
            f"<div class='rxllm-sweep'><b>rxllm sweep</b> · {html.escape(self.headline())}"
            f"<table>{rows}</table></div>"
        )

    def rich(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(f"rxllm sweep · {self.headline()}"), title_justify="left")
        table.add_column("model")
        table.add_column("progress")
        for model, line in self.lines():
            table.add_row(Text(model), Text(line))
        return table


def progress_kind(progress: bool | None) -> ProgressKind:
    """Where to draw: in a Jupyter kernel the notebook, on a terminal rich, else nowhere."""
    if progress is False:
        return "none"
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        shell = ipython.get_ipython()
        if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
            return "notebook"
    if progress or sys.stderr.isatty():
        return "terminal"
    return "none"


class _Html:
    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return "<rxllm sweep progress>"


@contextlib.asynccontextmanager
async def live_progress(state: SweepProgress, kind: ProgressKind) -> AsyncIterator[None]:
    """Draw ``state`` while the block runs (throttled), and its final state after it."""
    if kind == "none":
        yield
        return
    draw: Any
    stop: Any
    if kind == "notebook":
        from IPython.display import display

        handle = display(_Html(state.html()), display_id=True)  # type: ignore[no-untyped-call,unused-ignore]

        def draw() -> None:
            handle.update(_Html(state.html()))

        stop = draw
    else:
        from rich.console import Console
        from rich.live import Live

        live = Live(state.rich(), console=Console(file=sys.stderr), auto_refresh=False)
        live.start()

        def draw() -> None:
            live.update(state.rich(), refresh=True)

        def stop() -> None:
            draw()
            live.stop()

    async def redraw() -> None:
        while True:
            await asyncio.sleep(1 / REFRESH_PER_SECOND)
            draw()

    task = asyncio.create_task(redraw())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stop()

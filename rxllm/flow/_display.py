"""``show(flow)``: a flow run drawn live in a Jupyter cell, one box per step."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reactivex import Observable

from ._context import Context
from ._flow import Flow, FlowEvent, FlowResult, as_context, step_name

__all__ = ["FlowView", "show"]

_STYLE = (
    "<style>.rxllm-flow{font-family:inherit}.rxllm-step{border:1px solid #8884;"
    "border-radius:6px;padding:6px 8px;margin:4px 0}.rxllm-step h4{margin:0 0 4px 0;"
    "font-family:monospace}.rxllm-step pre{white-space:pre-wrap;margin:0;font-family:inherit}"
    ".rxllm-flow table{font-family:monospace;font-size:85%}</style>"
)


@dataclass
class _StepView:
    name: str
    status: str = "waiting"
    text: str = ""


@dataclass
class FlowView:
    """What :func:`show` draws: each step's status and text, then the usage per tag."""

    steps: list[_StepView]
    result: FlowResult | None = None
    redraws: int = 0
    output_keys: frozenset[str] = field(default_factory=frozenset)

    def add(self, event: FlowEvent) -> None:
        if event.result is not None:
            self.result = event.result
            return
        step = self.steps[event.index]
        if event.type == "started":
            step.status = "running"
        elif event.type == "progress" and event.change is not None:
            key, new = event.change.key, event.change.new
            if isinstance(new, str) and (key == "partial_response" or key in self.output_keys):
                step.text = new
        elif event.type == "finished":
            step.status = "done" if event.ok else "stopped"
        elif event.type == "failed":
            step.status = f"failed: {type(event.error).__name__}"
        else:
            step.status = event.type

    def render(self) -> str:
        parts = [_STYLE, '<div class="rxllm-flow">']
        for step in self.steps:
            parts.append(
                f'<div class="rxllm-step"><h4>{html.escape(step.name)} · '
                f"{html.escape(step.status)}</h4><pre>{html.escape(step.text)}</pre></div>"
            )
        if self.result is not None:
            parts.append(f"<p>{html.escape(self.result.status)}")
            if self.result.ended_by:
                parts.append(
                    f" at {html.escape(self.result.ended_by)}: "
                    f"{html.escape(self.result.reason or '')}"
                )
            parts.append("</p>")
            parts.append(_usage_table(self.result))
        parts.append("</div>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.render()


def _usage_table(result: FlowResult) -> str:
    rows = result.usage.summary() if result.usage is not None else []
    if not rows:
        return ""
    head = ("tag", "model", "requests", "prompt_tokens", "completion_tokens", "cost_usd")
    cells = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                row["tag"],
                f"{row['provider']}:{row['model']}",
                row["requests"],
                row["prompt_tokens"],
                row["completion_tokens"],
                row["cost_usd"],
            )
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


class _HTML:
    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup


async def show(
    flow: Flow,
    context: Context | Mapping[str, Any] | None = None,
    *,
    abort_when: Observable[Any] | None = None,
    handle: Any = None,
) -> FlowResult:
    """Run ``flow`` and draw it live in the cell: each step's status and growing text
    (redrawn as ``partial_response`` changes, itself at most 10 times a second), then
    how the run ended and the usage per tag (phase). Returns the :class:`FlowResult`.

    Example:
        >>> result = await rxllm.flow.show(flow, {"prompt": "A word counter"})
    """
    if handle is None:
        from IPython.display import display  # type: ignore[attr-defined,unused-ignore]

        handle = display(_HTML(""), display_id=True)  # type: ignore[no-untyped-call,unused-ignore]
    keys = frozenset(str(getattr(s, "output_key", "")) for s in flow.steps) - {""}
    view = FlowView([_StepView(step_name(s)) for s in flow.steps], output_keys=keys)
    result: FlowResult | None = None
    # The run itself rather than flow.events(): the same events, on this loop, no bridge.
    async with contextlib.aclosing(flow._run(as_context(context), abort_when)) as events:
        async for event in events:
            view.add(event)
            view.redraws += 1
            handle.update(_HTML(view.render()))
            result = event.result or result
    assert result is not None
    return result

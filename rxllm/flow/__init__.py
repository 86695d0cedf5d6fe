"""The flow layer (the seed's flow system): a ``Context``, ``Step``\\ s and ``Flow``.

- :class:`Context`: the key-value state of one run; its changes are an Observable.
- :class:`Step`: ``async execute(context) -> bool`` and a ``name``; plain functions
  (sync or async) are steps too.
- :class:`Flow`: runs steps in order, stops at the first that returns False or raises
  and says which and why; :meth:`Flow.abort` from any thread; a run is also an
  Observable of :class:`FlowEvent`.
- :class:`LLMStreamStep`: streams a reply into the context (``partial_response`` as it
  grows, ``final_response`` at the end, ``stream_aborted`` on timeout or abort).
- :func:`show`: a run drawn live in Jupyter.

The four work phases (plan, creative, implement, qa) are steps too:
:class:`rxllm.phases.PhaseStep`.

Example:
    >>> from rxllm.flow import Flow, LLMStreamStep
    >>> flow = Flow([
    ...     LLMStreamStep(claude, output_key="plan"),
    ...     LLMStreamStep(gpt, prompt="Implement this plan:\\n{plan}", output_key="code"),
    ... ])
    >>> result = await flow.run({"prompt": "A CLI that counts words", "timeout": 60})
    >>> result.status, result.context["code"]
"""

from __future__ import annotations

from ._context import Context, ContextChange
from ._display import FlowView, show
from ._flow import (
    Flow,
    FlowEvent,
    FlowResult,
    FunctionStep,
    Step,
    StepLike,
    abort_signal,
    current_usage_tracker,
)
from ._llm_step import DEFAULT_TIMEOUT, PARTIAL_INTERVAL, LLMStreamStep

__all__ = [
    "DEFAULT_TIMEOUT",
    "PARTIAL_INTERVAL",
    "Context",
    "ContextChange",
    "Flow",
    "FlowEvent",
    "FlowResult",
    "FlowView",
    "FunctionStep",
    "LLMStreamStep",
    "Step",
    "StepLike",
    "abort_signal",
    "current_usage_tracker",
    "show",
]

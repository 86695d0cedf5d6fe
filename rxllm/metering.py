"""Usage accounting for operators that end, drop or stitch streams.

"Usage is never lost": an operator that cuts a stream short (or throws an
attempt away) still reports what it consumed. Providers send exact usage only
in their ``done`` event, so for a stream that never got that far rxllm
*estimates*: one completion token per ``token``/``reasoning`` event seen, and
(when the source is an :class:`~rxllm.stream.LLMStream`) the prompt as
``len(text) // 4`` of its request. Estimated usage is marked with
``details={"usage_estimated": True}`` on the ``done`` that carries it, and its
``cost`` is the catalog's price of that estimate (``None`` when the model's
price is not known): the one rule for every operator that ends a stream early
and for the command line's partial usage.
"""

from __future__ import annotations

from typing import Any

from reactivex import Observable

from . import catalog
from .events import (
    DoneEvent,
    FinishReason,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    ToolCallDeltaEvent,
    Usage,
)
from .request import StreamRequest
from .stream import LLMStream

__all__ = ["UsageMeter", "estimate_prompt_tokens", "stream_identity"]

USAGE_ESTIMATED = "usage_estimated"


def estimate_prompt_tokens(request: StreamRequest) -> int:
    """A rough prompt size: four characters per token over the system prompt and turns."""
    text = (request.system_prompt() or "") + "".join(m.text for m in request.conversation())
    return len(text) // 4


def stream_identity(source: Observable[Any]) -> tuple[str, str]:
    """``(provider, model)`` of a stream, ``("", "")`` when it is not an ``LLMStream``."""
    if isinstance(source, LLMStream):
        return source.provider.name, source.request.model
    return "", ""


class UsageMeter:
    """Counts what one run of a stream delivered, to estimate its usage if it never finishes.

    Example:
        >>> meter = UsageMeter(stream)
        >>> meter.observe(TokenEvent("Hi"))
        >>> meter.done(FinishReason.TOKEN_LIMIT).usage.completion_tokens
        1
    """

    def __init__(self, source: Observable[Any] | None = None) -> None:
        self.request = source.request if isinstance(source, LLMStream) else None
        self.provider, self.model = stream_identity(source) if source is not None else ("", "")
        self.token_events = 0
        self.reasoning_events = 0
        self.call_fragments = 0
        """Tool-call argument fragments: output too, about a token each."""
        self.final: DoneEvent | None = None
        """The provider's own ``done``, once it arrived (then usage is exact)."""

    def observe(self, event: StreamEvent) -> None:
        if isinstance(event, TokenEvent):
            self.token_events += 1
        elif isinstance(event, ReasoningEvent):
            self.reasoning_events += 1
        elif isinstance(event, DoneEvent):
            self.final = event
        elif isinstance(event, ToolCallDeltaEvent):
            self.call_fragments += 1

    @property
    def produced(self) -> bool:
        """Whether any text, reasoning or tool call was seen."""
        return bool(self.token_events or self.reasoning_events or self.call_fragments)

    @property
    def estimated(self) -> bool:
        """Whether :meth:`usage` is an estimate (no provider ``done`` seen)."""
        return self.final is None

    def usage(self, *, silent_is_free: bool = False) -> Usage:
        """Exact usage when the provider's ``done`` arrived, else the estimate so far.

        With ``silent_is_free``, a run that produced nothing counts as free
        (the provider rejected it: rate limited, overloaded); otherwise its
        prompt was sent and is counted.
        """
        if self.final is not None:
            return self.final.usage
        if silent_is_free and not self.produced:
            return Usage(cost=0.0)  # rejected before any output: nothing to pay
        prompt = estimate_prompt_tokens(self.request) if self.request is not None else 0
        usage = Usage(
            prompt_tokens=prompt,
            completion_tokens=self.token_events + self.reasoning_events + self.call_fragments,
            reasoning_tokens=self.reasoning_events,
        )
        return usage.with_cost(catalog.cost(self.provider, self.model, usage))

    def done(self, finish_reason: FinishReason, **details: Any) -> DoneEvent:
        """The ``done`` that ends this run early, carrying the (estimated) usage so far."""
        if self.estimated:
            details = {USAGE_ESTIMATED: True, **details}
        return DoneEvent(
            usage=self.usage(),
            finish_reason=finish_reason,
            model=self.model,
            provider=self.provider,
            details=details,
        )

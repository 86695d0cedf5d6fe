"""``StreamResult``: a whole stream, collected."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .events import (
    DoneEvent,
    ErrorEvent,
    FinishReason,
    ObjectEvent,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    ToolCallEvent,
    Usage,
)
from .tools import ToolCall

__all__ = ["StreamResult"]


@dataclass(frozen=True, slots=True)
class StreamResult:
    """The text, reasoning, usage and finish reason of one finished stream, with the tool
    calls it made and, for structured output, the validated object."""

    text: str
    reasoning: str
    usage: Usage
    finish_reason: FinishReason
    model: str
    provider: str
    details: Mapping[str, Any] = field(default_factory=dict)
    """The ``done`` event's details: what only some providers or operators report
    (``ignored`` parameters, ``winner``, ``attempts``, ``usage_estimated``, ids...)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The complete tool calls of the reply, in order (``finish_reason`` is then
    ``tool_calls``)."""
    object: Any = None
    """The validated structured output (``response_format=``): the pydantic instance when
    a model class was given, else the parsed JSON; ``None`` without ``response_format``."""

    @classmethod
    def from_events(cls, events: Iterable[StreamEvent]) -> StreamResult:
        """Fold events into a result. Raises the first in-band error; needs a ``done``.

        A stream without its ``done`` event ended early (every rxllm stream ends
        with one), so that is :class:`~rxllm.errors.StreamInterruptedError`, not bad input.
        """
        text: list[str] = []
        reasoning: list[str] = []
        done: DoneEvent | None = None
        calls: list[ToolCall] = []
        value: Any = None
        for event in events:
            if isinstance(event, TokenEvent):
                text.append(event.text)
            elif isinstance(event, ReasoningEvent):
                reasoning.append(event.text)
            elif isinstance(event, ToolCallEvent):
                calls.append(ToolCall.of(event))
            elif isinstance(event, ObjectEvent):
                value = event.value
            elif isinstance(event, DoneEvent):
                done = event
            elif isinstance(event, ErrorEvent):
                raise event.error
        if done is None:
            raise errors.StreamInterruptedError(
                "the stream completed without a done event, so it ended early: every rxllm "
                "stream ends with one (a provider or operator that does not is a bug)"
            )
        return cls(
            text="".join(text),
            reasoning="".join(reasoning),
            usage=done.usage,
            finish_reason=done.finish_reason,
            model=done.model,
            provider=done.provider,
            details=done.details,
            tool_calls=tuple(calls),
            object=value,
        )

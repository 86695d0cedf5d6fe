"""``StreamResult``: a whole stream, collected."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .events import DoneEvent, ErrorEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent
from .events import Usage

__all__ = ["StreamResult"]


@dataclass(frozen=True, slots=True)
class StreamResult:
    """The text, reasoning, usage and finish reason of one finished stream."""

    text: str
    reasoning: str
    usage: Usage
    finish_reason: FinishReason
    model: str
    provider: str

    @classmethod
    def from_events(cls, events: Iterable[StreamEvent]) -> StreamResult:
        """Fold events into a result. Raises the first in-band error; needs a ``done``."""
        text: list[str] = []
        reasoning: list[str] = []
        done: DoneEvent | None = None
        for event in events:
            if isinstance(event, TokenEvent):
                text.append(event.text)
            elif isinstance(event, ReasoningEvent):
                reasoning.append(event.text)
            elif isinstance(event, DoneEvent):
                done = event
            elif isinstance(event, ErrorEvent):
                raise event.error
        if done is None:
            raise ValueError("the stream completed without a done event")
        return cls(
            text="".join(text),
            reasoning="".join(reasoning),
            usage=done.usage,
            finish_reason=done.finish_reason,
            model=done.model,
            provider=done.provider,
        )

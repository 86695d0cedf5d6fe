"""The stream vocabulary: what an ``Observable[StreamEvent]`` carries.

Every stream is a sequence of ``token`` and ``reasoning`` events that ends with
exactly one ``done`` event (usage and finish reason), or with an error on Rx's
error channel. ``error`` events exist for in-band use, where one failing lane
must not end the others (see ``rxllm.operators.errors_as_events``).

Events are frozen, slotted dataclasses tagged by ``type`` so that both
``match event: case TokenEvent(text=t)`` and ``if event.type == "token"`` work.
New kinds (tool-call deltas) will be new classes in the union; code that
ignores unknown ``type`` values keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal, TypeAlias

__all__ = [
    "DoneEvent",
    "ErrorEvent",
    "FinishReason",
    "ReasoningEvent",
    "StreamEvent",
    "TokenEvent",
    "Usage",
]


class FinishReason(StrEnum):
    """Why a stream ended, normalized across providers."""

    STOP = "stop"
    """The model finished (or hit a stop sequence)."""
    LENGTH = "length"
    """The provider cut the reply at ``max_tokens``."""
    TOKEN_LIMIT = "token_limit"
    """rxllm's ``take_tokens`` ended the stream."""
    CONTENT_FILTER = "content_filter"
    """A safety or content filter stopped the reply."""
    CANCELLED = "cancelled"
    """A trigger (``cancel_when``) or the user stopped the stream."""
    TIMEOUT = "timeout"
    """rxllm's ``timeout`` ended the stream."""
    TOOL_CALLS = "tool_calls"
    """The model stopped to call a tool."""
    ERROR = "error"
    """The stream ended because of an error."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, with one meaning on every provider.

    ``completion_tokens`` counts every output token, reasoning included;
    ``reasoning_tokens`` is that subset; ``prompt_tokens`` includes cached
    prompt tokens; ``total_tokens`` is ``prompt_tokens + completion_tokens``.
    ``cost`` is in US dollars, ``None`` when the catalog has no price.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"Usage.{name} must be >= 0")
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError("Usage.reasoning_tokens is a subset of completion_tokens")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        """Sum two usages (e.g. over retry attempts); cost is known only if both are."""
        cost = None if self.cost is None or other.cost is None else self.cost + other.cost
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cost=cost,
        )

    def with_cost(self, cost: float | None) -> Usage:
        return replace(self, cost=cost)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A piece of the reply's text, in order. Concatenating all ``text`` gives the reply."""

    text: str
    type: Literal["token"] = field(default="token", init=False)


@dataclass(frozen=True, slots=True)
class ReasoningEvent:
    """A piece of the model's reasoning (thinking) text; never part of the reply."""

    text: str
    type: Literal["reasoning"] = field(default="reasoning", init=False)


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The last event of every stream: usage and why it ended.

    ``details`` holds what only one vendor has (e.g. the raw stop reason),
    never SDK objects.
    """

    usage: Usage
    finish_reason: FinishReason
    model: str
    provider: str
    details: Mapping[str, Any] = field(default_factory=dict)
    type: Literal["done"] = field(default="done", init=False)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An error carried in-band (fan-out lanes); normally errors travel on ``on_error``."""

    error: Exception
    type: Literal["error"] = field(default="error", init=False)


StreamEvent: TypeAlias = TokenEvent | ReasoningEvent | DoneEvent | ErrorEvent

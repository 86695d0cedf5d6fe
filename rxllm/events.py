"""The stream vocabulary: what an ``Observable[StreamEvent]`` carries.

Every stream is a sequence of ``token`` and ``reasoning`` events that ends with
exactly one ``done`` event (usage and finish reason), or with an error on Rx's
error channel. ``error`` events exist for in-band use, where one failing lane
must not end the others (see ``rxllm.operators.errors_as_events``).

Beyond text, a stream may carry tool calls and structured output:

- ``tool_call_delta`` events carry a fragment of one call's arguments (JSON
  text) as it arrives, and one ``tool_call`` event follows when that call is
  complete, with its arguments parsed, always before ``done``;
- ``tool_result`` events (from :func:`rxllm.run_tools` only) carry what a tool
  returned, before the next round's reply;
- ``partial_object`` events carry the reply parsed so far when the request
  asked for structured output (``response_format=``), and one ``object`` event
  before ``done`` carries the validated object.

Events are frozen, slotted dataclasses tagged by ``type`` so that both
``match event: case TokenEvent(text=t)`` and ``if event.type == "token"`` work.
Code that ignores unknown ``type`` values keeps working when kinds are added.
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
    "ObjectEvent",
    "PartialObjectEvent",
    "ReasoningEvent",
    "StreamEvent",
    "TokenEvent",
    "ToolCallDeltaEvent",
    "ToolCallEvent",
    "ToolResultEvent",
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


def _text_event_init(cls: type[TokenEvent | ReasoningEvent], kind: str) -> None:
    """Give a text event class an ``__init__`` that sets its two slots directly.

    A frozen dataclass's generated ``__init__`` sets each field through
    ``object.__setattr__`` (~0.45 µs for these two); one of these events is made per
    token on the hot path, so their ``__init__`` sets the slots through their
    descriptors instead (~0.29 µs). The same fields, frozen, equality, hash, ``repr``,
    ``replace`` and pattern matching: only the construction is quicker.
    """
    set_text = cls.__dict__["text"].__set__
    set_type = cls.__dict__["type"].__set__

    def __init__(self: Any, text: str) -> None:
        set_text(self, text)
        set_type(self, kind)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", __init__)  # noqa: B010 (a method assignment mypy refuses)


_text_event_init(TokenEvent, "token")
_text_event_init(ReasoningEvent, "reasoning")


@dataclass(frozen=True, slots=True)
class ToolCallDeltaEvent:
    """A fragment of a tool call, as it streams.

    ``index`` numbers the calls of one reply from 0 in the order they start;
    ``id`` and ``name`` are set on the first fragment of a call (and ``None``
    after, on vendors that send them once). Concatenating the ``arguments`` of
    one index gives that call's arguments as JSON text.
    """

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None
    type: Literal["tool_call_delta"] = field(default="tool_call_delta", init=False)


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """One complete tool call, its arguments parsed; sent as soon as the call is complete.

    ``server_side`` marks a tool the vendor runs itself (xAI's web search,
    Anthropic's server tools): reported, never run locally (``run_tools`` skips
    it), its result already part of the vendor's reply.
    """

    id: str
    name: str
    arguments: Mapping[str, Any]
    index: int = 0
    server_side: bool = False
    vendor_data: Mapping[str, Any] = field(default_factory=dict)
    """What the vendor needs back with the call in a later turn (Gemini's thought
    signature), JSON-ready; kept in history by ``ToolCall``."""
    type: Literal["tool_call"] = field(default="tool_call", init=False)


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    """What a tool returned, sent back to the model by :func:`rxllm.run_tools` (which
    alone emits these, between one round's calls and the next round's reply).
    ``is_error``: the tool raised, and ``content`` is the error the model is told."""

    id: str
    name: str
    content: str
    is_error: bool = False
    type: Literal["tool_result"] = field(default="tool_result", init=False)


@dataclass(frozen=True, slots=True)
class PartialObjectEvent:
    """Structured output parsed so far: the JSON value the reply's text makes up to now
    (strings may be cut short; never validated). Sent whenever it changes."""

    value: Any
    type: Literal["partial_object"] = field(default="partial_object", init=False)


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """Structured output, complete and validated: the pydantic instance when a model
    class was asked for, else the JSON value. Sent once, before ``done``."""

    value: Any
    type: Literal["object"] = field(default="object", init=False)


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


StreamEvent: TypeAlias = (
    TokenEvent
    | ReasoningEvent
    | ToolCallDeltaEvent
    | ToolCallEvent
    | ToolResultEvent
    | PartialObjectEvent
    | ObjectEvent
    | DoneEvent
    | ErrorEvent
)

"""What a user asks for: ``Message`` and ``StreamRequest``.

Both are frozen and validated on construction, so bad input fails with a
``ValueError`` naming the field before anything touches the network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias, get_args

from .content import Part, TextPart, as_part, part_to_dict
from .structured import ResponseFormat
from .tools import Tool, ToolCall, ToolChoice, as_tool

__all__ = [
    "CONTINUATION_INSTRUCTION",
    "Message",
    "ReasoningEffort",
    "Role",
    "StreamRequest",
]

CONTINUATION_INSTRUCTION = (
    "Your previous reply was cut off. Continue it exactly where it stopped: do not repeat "
    "any of it, do not comment, just write the rest."
)
"""What providers without native assistant prefill send to resume a cut reply."""

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
ReasoningEffort: TypeAlias = Literal["low", "medium", "high"]

_ROLES: frozenset[str] = frozenset(get_args(Role))
_EFFORTS: frozenset[str] = frozenset(get_args(ReasoningEffort))


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """One turn of a conversation.

    ``role`` is ``"system"``, ``"user"``, ``"assistant"`` or ``"tool"``.
    ``content`` is text, or for a user turn a sequence of parts (strings,
    :func:`rxllm.image`, :func:`rxllm.document`). An assistant turn may carry the
    ``tool_calls`` it made (its text may then be empty); a ``"tool"`` turn is one
    call's result: ``tool_call_id`` names the call, ``name`` the tool, and
    ``is_error`` says the tool failed (``content`` is then the error).

    Example:
        >>> Message.tool_result("call_1", "12°C, light rain", name="get_weather")
    """

    role: Role
    content: str | tuple[Part, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"Message.role must be one of {sorted(_ROLES)}, got {self.role!r}")
        content = self.content
        if not isinstance(content, str):
            if isinstance(content, bytes) or not isinstance(content, Sequence):
                raise ValueError(
                    "Message.content must be a str or a list of parts, got "
                    f"{type(content).__name__}"
                )
            parts = tuple(as_part(p, f"Message.content[{i}]") for i, p in enumerate(content))
            if self.role != "user" and not all(isinstance(p, TextPart) for p in parts):
                raise ValueError(f"only user messages take images and documents (a {self.role})")
            # Text alone is kept as a string: the shape every vendor takes.
            if all(isinstance(p, TextPart) for p in parts):
                object.__setattr__(self, "content", "".join(p.text for p in parts))  # type: ignore[union-attr]
            else:
                object.__setattr__(self, "content", parts)
        if not isinstance(self.tool_calls, tuple):
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if self.tool_calls and self.role != "assistant":
            raise ValueError("Message.tool_calls belong to an assistant message")
        if not all(isinstance(call, ToolCall) for call in self.tool_calls):
            object.__setattr__(self, "tool_calls", tuple(_as_call(c) for c in self.tool_calls))
        if self.role == "tool":
            if not (isinstance(self.tool_call_id, str) and self.tool_call_id):
                raise ValueError("a tool message needs the tool_call_id of the call it answers")
        elif self.tool_call_id is not None:
            raise ValueError("Message.tool_call_id belongs to a tool message")
        # A continued reply may be cut after whitespace, a call needs no words, a tool may
        # return nothing; any other turn needs words.
        text = self.text
        if self.role == "user" and not isinstance(self.content, str):
            pass  # parts: an image alone is a question
        elif self.role in ("user", "system") and not text.strip():
            raise ValueError(f"Message.content must not be empty (a {self.role} message)")
        elif self.role == "assistant" and not text and not self.tool_calls:
            raise ValueError("Message.content must not be empty (an assistant message)")
        _check_text(text, "Message.content")

    def __repr__(self) -> str:
        # Role and content, and only the fields a turn of its kind sets.
        extras = "".join(
            f", {name}={getattr(self, name)!r}"
            for name, unset in (
                ("tool_calls", ()),
                ("tool_call_id", None),
                ("name", None),
                ("is_error", False),
            )
            if getattr(self, name) != unset
        )
        return f"Message(role={self.role!r}, content={self.content!r}{extras})"

    @property
    def text(self) -> str:
        """The text of the message (its text parts, joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def parts(self) -> tuple[Part, ...]:
        """The content as parts (a string is one text part; none when empty)."""
        if isinstance(self.content, str):
            return (TextPart(self.content),) if self.content else ()
        return self.content

    @classmethod
    def tool_result(
        cls, call_id: str, content: str, *, name: str | None = None, is_error: bool = False
    ) -> Message:
        """The ``"tool"`` message that answers call ``call_id``."""
        return cls("tool", content, tool_call_id=call_id, name=name, is_error=is_error)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (images as base64), read back by :meth:`from_dict`."""
        out: dict[str, Any] = {"role": self.role}
        if isinstance(self.content, str):
            out["content"] = self.content
        else:
            out["content"] = [part_to_dict(p) for p in self.content]
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        if self.is_error:
            out["is_error"] = True
        return out

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Message:
        """The message a dict describes (:meth:`to_dict`'s shape)."""
        return cls(
            value["role"],
            value.get("content", ""),
            tool_calls=tuple(_as_call(c) for c in value.get("tool_calls") or ()),
            tool_call_id=value.get("tool_call_id"),
            name=value.get("name"),
            is_error=bool(value.get("is_error", False)),
        )


def _as_call(value: object) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    if isinstance(value, Mapping) and "id" in value and "name" in value:
        return ToolCall(
            str(value["id"]),
            str(value["name"]),
            dict(value.get("arguments") or {}),
            bool(value.get("server_side", False)),
            dict(value.get("vendor_data") or {}),
        )
    raise ValueError(
        f"a tool call must be a ToolCall or an {{id, name, arguments}} dict: {value!r:.60}"
    )


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A request for one streamed reply.

    Give ``prompt`` or ``messages`` (or both: the prompt becomes the last user
    message). ``system`` is the system prompt; a ``"system"`` message in
    ``messages`` is merged into it by providers that take it separately.
    ``reasoning`` asks for thinking: ``True`` for the provider's default
    budget, or an effort level ``"low" | "medium" | "high"``.

    ``tools`` offers tools (:class:`~rxllm.tools.Tool`, typed functions, pydantic
    models or dicts), ``tool_choice`` says whether and which to call
    (``"auto"``, ``"none"``, ``"required"`` or a tool's name) and
    ``parallel_tool_calls=False`` asks for one call at a time where the vendor
    lets rxllm say so. ``response_format`` (a pydantic model class or a JSON
    Schema) asks for structured output (:mod:`rxllm.structured`).

    Example:
        >>> StreamRequest(model="claude-sonnet-4-6", prompt="Hi").conversation()
        (Message(role='user', content='Hi'),)
    """

    model: str
    prompt: str | None = None
    messages: tuple[Message, ...] = ()
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    reasoning: bool | ReasoningEffort = False
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Provider-specific extras passed through to the SDK call (advanced)."""

    def __post_init__(self) -> None:
        # Accept lists and dicts for convenience, store tuples of Message.
        if isinstance(self.messages, str | bytes | Message) or not isinstance(
            self.messages, Sequence
        ):
            raise ValueError(
                "StreamRequest.messages must be a list of messages, got "
                f"{type(self.messages).__name__}"
            )
        object.__setattr__(
            self, "messages", tuple(_as_message(m, i) for i, m in enumerate(self.messages))
        )
        if isinstance(self.tools, str | bytes | Mapping) or not isinstance(self.tools, Sequence):
            raise ValueError(
                f"StreamRequest.tools must be a list of tools, got {type(self.tools).__name__}"
            )
        object.__setattr__(self, "tools", tuple(as_tool(t) for t in self.tools))
        if self.response_format is not None:
            object.__setattr__(self, "response_format", ResponseFormat.of(self.response_format))
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("StreamRequest.model must be a non-empty model name")
        if self.prompt is None and not self.messages:
            raise ValueError("StreamRequest needs a prompt or messages (both are empty)")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ValueError(
                f"StreamRequest.prompt must be a str, got {type(self.prompt).__name__}"
            )
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("StreamRequest.prompt must not be empty")
        if self.prompt is not None:
            _check_text(self.prompt, "StreamRequest.prompt")
        if self.system is not None:
            if not isinstance(self.system, str):
                raise ValueError(
                    f"StreamRequest.system must be a str, got {type(self.system).__name__}"
                )
            _check_text(self.system, "StreamRequest.system")
        if self.temperature is not None and (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, int | float)
            or math.isnan(self.temperature)
            or not 0 <= self.temperature <= 2
        ):
            raise ValueError(
                f"StreamRequest.temperature must be between 0 and 2, got {self.temperature!r}"
            )
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            raise ValueError(f"StreamRequest.max_tokens must be >= 1, got {self.max_tokens!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("StreamRequest.stop must be non-empty strings")
        for stop in self.stop:
            _check_text(stop, "StreamRequest.stop")
        if not isinstance(self.reasoning, bool) and self.reasoning not in _EFFORTS:
            raise ValueError(
                "StreamRequest.reasoning must be True, False or one of "
                f"{sorted(_EFFORTS)}, got {self.reasoning!r}"
            )
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"StreamRequest.tools has two tools with one name: {names}")
        if self.tool_choice is not None:
            if not isinstance(self.tool_choice, str):
                raise ValueError("StreamRequest.tool_choice must be a string")
            if (
                self.tool_choice not in ("auto", "none", "required")
                and self.tool_choice not in names
            ):
                raise ValueError(
                    "StreamRequest.tool_choice must be 'auto', 'none', 'required' or the name "
                    f"of an offered tool ({', '.join(names) or 'none offered'}), got "
                    f"{self.tool_choice!r}"
                )
            if self.tool_choice != "none" and not self.tools:
                raise ValueError(f"StreamRequest.tool_choice={self.tool_choice!r} but no tools")
        if self.parallel_tool_calls is not None and not isinstance(self.parallel_tool_calls, bool):
            raise ValueError("StreamRequest.parallel_tool_calls must be True, False or None")
        if not any(m.role == "user" for m in self.conversation()):
            raise ValueError("StreamRequest needs at least one user message or a prompt")

    def conversation(self) -> tuple[Message, ...]:
        """The non-system messages to send, the prompt last."""
        turns = tuple(m for m in self.messages if m.role != "system")
        if self.prompt is not None:
            turns += (Message("user", self.prompt),)
        return turns

    def system_prompt(self) -> str | None:
        """``system`` and any system messages, joined; ``None`` when there is none."""
        parts = [self.system] if self.system else []
        parts += [m.text for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    def replace(self, **changes: Any) -> StreamRequest:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def continued(self, partial: str) -> StreamRequest:
        """The request that asks the model to continue after ``partial`` (assistant prefill).

        Used by ``retry_on_interrupt`` to resume a cut stream without
        repeating text. ``max_tokens`` is left to the caller to reduce.
        """
        turns = self.conversation()
        if turns and turns[-1].role == "assistant" and not turns[-1].tool_calls:
            last = turns[-1]
            turns = (*turns[:-1], Message("assistant", last.text + partial))
        else:
            turns = (*turns, Message("assistant", partial))
        systems = tuple(m for m in self.messages if m.role == "system")
        return replace(self, prompt=None, messages=(*systems, *turns))

    def with_continuation_instruction(self) -> StreamRequest:
        """For providers that do not continue a trailing assistant message (OpenAI Chat
        Completions, Gemini, Grok): the same conversation plus a user turn asking the
        model to continue its cut-off reply (:data:`CONTINUATION_INSTRUCTION`)."""
        if not self.prefill:
            return self
        systems = tuple(m for m in self.messages if m.role == "system")
        turns = (*self.conversation(), Message("user", CONTINUATION_INSTRUCTION))
        return replace(self, prompt=None, messages=(*systems, *turns))

    @property
    def prefill(self) -> str:
        """The assistant prefill the reply continues from ('' when none)."""
        turns = self.conversation()
        last = turns[-1] if turns else None
        return last.text if last and last.role == "assistant" and not last.tool_calls else ""


def _as_message(value: object, index: int) -> Message:
    if isinstance(value, Message):
        return value
    if isinstance(value, Mapping) and "role" in value:
        return Message.from_dict(value)
    if isinstance(value, tuple | list) and len(value) == 2:
        return Message(value[0], value[1])
    raise ValueError(
        f"StreamRequest.messages[{index}] must be a Message, a {{'role': ..., 'content': ...}} "
        f"dict or a (role, content) pair, got {value!r:.60}"
    )


def _check_text(text: str, field_name: str) -> None:
    """Text every API can take: no NUL character, no lone surrogate (not encodable)."""
    if "\x00" in text:
        raise ValueError(f"{field_name} contains a NUL character (\\x00) at {text.index(chr(0))}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{field_name} contains a lone surrogate at {error.start} ({text[error.start]!a}): "
            "not valid Unicode text; was it decoded with errors='surrogateescape'?"
        ) from None

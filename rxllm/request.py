"""What a user asks for: ``Message`` and ``StreamRequest``.

Both are frozen and validated on construction, so bad input fails with a
``ValueError`` naming the field before anything touches the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias, get_args

__all__ = ["CONTINUATION_INSTRUCTION", "Message", "ReasoningEffort", "Role", "StreamRequest"]

CONTINUATION_INSTRUCTION = (
    "Your previous reply was cut off. Continue it exactly where it stopped: do not repeat "
    "any of it, do not comment, just write the rest."
)
"""What providers without native assistant prefill send to resume a cut reply."""

Role: TypeAlias = Literal["system", "user", "assistant"]
ReasoningEffort: TypeAlias = Literal["low", "medium", "high"]

_ROLES: frozenset[str] = frozenset(get_args(Role))
_EFFORTS: frozenset[str] = frozenset(get_args(ReasoningEffort))


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation. ``role`` is ``"system"``, ``"user"`` or ``"assistant"``."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"Message.role must be one of {sorted(_ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise ValueError(f"Message.content must be a str, got {type(self.content).__name__}")
        # A continued reply may be cut after whitespace; any other turn needs words.
        if not (self.content if self.role == "assistant" else self.content.strip()):
            raise ValueError(f"Message.content must not be empty (a {self.role} message)")
        _check_text(self.content, "Message.content")


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A request for one streamed reply.

    Give ``prompt`` or ``messages`` (or both: the prompt becomes the last user
    message). ``system`` is the system prompt; a ``"system"`` message in
    ``messages`` is merged into it by providers that take it separately.
    ``reasoning`` asks for thinking: ``True`` for the provider's default
    budget, or an effort level ``"low" | "medium" | "high"``.

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
        parts += [m.content for m in self.messages if m.role == "system"]
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
        if turns and turns[-1].role == "assistant":
            last = turns[-1]
            turns = (*turns[:-1], Message("assistant", last.content + partial))
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
        return turns[-1].content if turns and turns[-1].role == "assistant" else ""


def _as_message(value: object, index: int) -> Message:
    if isinstance(value, Message):
        return value
    if isinstance(value, dict) and "role" in value and "content" in value:
        return Message(value["role"], value["content"])
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

"""``Conversation``: a chat that keeps its history.

Each :meth:`Conversation.stream` sends the history plus a new user turn and,
when the reply completes (its ``done`` event), appends the user turn and the
reply to the history: the assistant's text and tool calls, and with tools that
have functions, every round of :func:`rxllm.run_tools` (calls, results, the
answer). A reply that fails or is disposed before its ``done`` leaves the
history as it was, so sending again is a clean retry. A reply stopped by an
operator that ends it with a ``done`` (``take_tokens``, ``timeout``) is kept
as far as it got.

A conversation can be forked (the copy shares nothing), serialized to JSON and
back (images included; tool functions and the model are not stored: give them
again to :meth:`Conversation.from_json`), and compared across models
(:meth:`Conversation.compare` sends the same history to each).

Example:
    >>> chat = rxllm.Conversation("anthropic:claude-sonnet-4-6", system="Be brief.")
    >>> await chat.send("Name a prime.")
    >>> await chat.send("And the next one?")     # sees the first turn
    >>> saved = chat.to_json()
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import reactivex
from reactivex import Observable, abc

from .compare import Comparison, compare
from .consume import collect, collect_sync
from .content import Part
from .events import DoneEvent, StreamEvent, TokenEvent, ToolCallEvent, ToolResultEvent
from .request import Message, StreamRequest
from .result import StreamResult
from .tool_loop import DEFAULT_MAX_ROUNDS, run_tools
from .tools import Tool, ToolCall, as_tool

__all__ = ["Conversation"]

_FORMAT = "rxllm.conversation/1"


class Conversation:
    """A chat with one model that keeps its history (see the module docstring).

    Args:
        model: ``"provider:model"``, a bound model, or ``None`` for a history only
            (send it with :meth:`compare`, or give a model to :meth:`stream`).
        system: the system prompt, sent with every turn.
        messages: the history to start from.
        tools: tools offered on every turn; those with functions are run
            (:func:`rxllm.run_tools`), up to ``max_rounds`` replies per turn.
        **fields: request fields for every turn (``max_tokens=``, ``temperature=``...).
    """

    def __init__(
        self,
        model: Any = None,
        *,
        system: str | None = None,
        messages: Sequence[Message | dict[str, Any]] = (),
        tools: Sequence[Any] = (),
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        **fields: Any,
    ) -> None:
        from .registry import model as bind

        self.model: Any = bind(model) if isinstance(model, str) else model
        self.system = system
        self.messages: list[Message] = [
            m if isinstance(m, Message) else Message.from_dict(m) for m in messages
        ]
        self.tools: tuple[Tool, ...] = tuple(as_tool(t) for t in tools)
        self.max_rounds = max_rounds
        self.fields = fields
        # Checked now, not at the first send.
        StreamRequest(model="check", prompt="check", tools=self.tools, **fields)

    # -- sending -------------------------------------------------------------------------

    def stream(
        self, prompt: str | Sequence[str | Part] | Message, **fields: Any
    ) -> Observable[StreamEvent]:
        """A cold stream of the reply to ``prompt`` (text, or parts: text and images);
        the history grows when it completes. ``fields`` are for this turn only."""
        if self.model is None:
            raise ValueError("this Conversation has no model: Conversation(model, ...)")
        user = prompt if isinstance(prompt, Message) else Message("user", prompt)  # type: ignore[arg-type]
        if user.role != "user":
            raise ValueError(f"Conversation.stream takes a user turn, got a {user.role} message")
        merged = {**self.fields, **fields}
        if self.system is not None:
            merged.setdefault("system", self.system)
        messages = (*self.messages, user)
        source: Observable[StreamEvent]
        if any(t.function is not None for t in self.tools):
            source = run_tools(
                self.model,
                messages=messages,
                tools=self.tools,
                max_rounds=self.max_rounds,
                **merged,
            )
        else:
            if self.tools:
                merged.setdefault("tools", self.tools)
            source = self.model.stream(messages=messages, **merged)
        return _recording(source, self, user)

    async def send(
        self, prompt: str | Sequence[str | Part] | Message, **fields: Any
    ) -> StreamResult:
        """Stream the reply to its end (see :meth:`stream`) and return it."""
        return await collect(self.stream(prompt, **fields))

    def send_sync(
        self, prompt: str | Sequence[str | Part] | Message, **fields: Any
    ) -> StreamResult:
        """Blocking :meth:`send`, for scripts (like :func:`rxllm.collect_sync`)."""
        return collect_sync(self.stream(prompt, **fields))

    def compare(self, prompt: str, models: Sequence[Any], **fields: Any) -> Comparison:
        """The same history plus ``prompt``, sent to each of ``models`` side by side
        (:func:`rxllm.compare`). The history does not change; continue with one lane's
        reply by :meth:`add`-ing it, or :meth:`fork` per model."""
        merged = {**self.fields, **fields}
        if self.system is not None:
            merged.setdefault("system", self.system)
        if self.tools:
            merged.setdefault("tools", self.tools)
        return compare(prompt, models, messages=tuple(self.messages), **merged)

    # -- the history -----------------------------------------------------------------------

    def add(self, *messages: Message | dict[str, Any]) -> None:
        """Append turns to the history as they are."""
        self.messages.extend(
            m if isinstance(m, Message) else Message.from_dict(m) for m in messages
        )

    def fork(self, model: Any = None) -> Conversation:
        """An independent copy (optionally with another model): each goes on alone."""
        twin = copy.copy(self)
        twin.messages = list(self.messages)
        twin.fields = dict(self.fields)
        if model is not None:
            from .registry import model as bind

            twin.model = bind(model) if isinstance(model, str) else model
        return twin

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the system prompt, the turns, and the tools' schemas (not functions)."""
        return {
            "format": _FORMAT,
            "model": self._model_spec(),
            "system": self.system,
            "messages": [m.to_dict() for m in self.messages],
            "tools": [t.to_dict() for t in self.tools],
        }

    def to_json(self, **dumps: Any) -> str:
        """The conversation as JSON text (:meth:`from_json` reads it back)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **dumps)

    @classmethod
    def from_json(
        cls,
        text: str | dict[str, Any],
        model: Any = None,
        *,
        tools: Sequence[Any] = (),
        **fields: Any,
    ) -> Conversation:
        """A conversation from :meth:`to_json`'s text. ``model`` and ``tools`` (with their
        functions) are given again; saved tools not given are offered without functions."""
        data = json.loads(text) if isinstance(text, str) else text
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a saved rxllm conversation (format {data.get('format')!r})")
        given = [as_tool(t) for t in tools]
        names = {t.name for t in given}
        saved = [as_tool(t) for t in data.get("tools") or () if t.get("name") not in names]
        return cls(
            model,
            system=data.get("system"),
            messages=data.get("messages") or (),
            tools=(*given, *saved),
            **fields,
        )

    def _model_spec(self) -> str | None:
        """``"provider:model"`` of a bound model (a provider alone has no one model)."""
        spec = getattr(self.model, "spec", None)
        return spec if isinstance(spec, str) else None

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        model = self._model_spec() or (self.model.name if self.model is not None else "no model")
        return f"<Conversation {model}: {len(self.messages)} messages>"


def _recording(
    source: Observable[StreamEvent], chat: Conversation, user: Message
) -> Observable[StreamEvent]:
    """``source``, appending ``user`` and the reply's turns to ``chat`` when its ``done``
    arrives."""

    def subscribe(
        observer: abc.ObserverBase[StreamEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        turns: list[Message] = []
        text: list[str] = []
        calls: list[ToolCall] = []

        def flush() -> None:
            if text or calls:
                turns.append(Message("assistant", "".join(text), tool_calls=tuple(calls)))
                text.clear()
                calls.clear()

        def on_next(event: StreamEvent) -> None:
            if isinstance(event, TokenEvent):
                text.append(event.text)
            elif isinstance(event, ToolCallEvent) and not event.server_side:
                calls.append(ToolCall.of(event))
            elif isinstance(event, ToolResultEvent):
                flush()
                turns.append(
                    Message.tool_result(
                        event.id, event.content, name=event.name, is_error=event.is_error
                    )
                )
            elif isinstance(event, DoneEvent):
                flush()
                chat.messages.extend((user, *turns))
            observer.on_next(event)

        return source.subscribe(
            on_next, observer.on_error, observer.on_completed, scheduler=scheduler
        )

    return reactivex.create(subscribe)

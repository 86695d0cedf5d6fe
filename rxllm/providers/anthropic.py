r"""Anthropic Claude on the official ``anthropic`` SDK (Messages API, streamed).

The SDK builds, authenticates and sends the request and raises its typed status
errors (``client.messages.with_streaming_response.create``); the events are then
framed in bytes per network read (:mod:`rxllm.providers._sse`) and ``json.loads``-ed,
skipping the pydantic model the SDK would build per chunk (the hot path; see ``bench/``).
The events of one read are handed over together (``_batches``), so what consumes them
pays its await per read, not per event.

Mapping:

- ``system`` → ``system``; the conversation → ``messages`` (a trailing assistant
  turn is Anthropic's native prefill, which the reply continues);
  ``stop`` → ``stop_sequences``; ``max_tokens`` → ``max_tokens`` (required by the
  API: when a request sets none, the provider's default, 4096 unless configured with
  ``max_tokens`` in the settings; raised above a thinking budget).
- ``reasoning`` → ``thinking={"type": "enabled", "budget_tokens": ...}`` with
  budgets low 1024, medium/``True`` 4096, high 16384, always below ``max_tokens``.
  Not sent for a prefilled (continued) request: the API then wants the final
  assistant turn to start with a thinking block, which a continuation lacks. Nor
  for a request that sends tool results (the last assistant turn made calls): the
  API wants that turn's signed thinking block back, which history does not keep;
  nor with a forced tool call (``tool_choice`` "required" or a name), which the API
  refuses with thinking. ``done.details["ignored"]`` then names ``reasoning``.
- ``temperature`` is not sent: anthropic 2.x speaks API version 2026-10-21, which
  removed the sampling parameters (any of them is a 400). ``done.details["ignored"]``
  says so when one was asked for.
- ``text_delta`` → ``TokenEvent``; ``thinking_delta`` → ``ReasoningEvent``.
- Tools: ``tools`` → ``tools=[{"name", "description", "input_schema"}]``;
  ``tool_choice`` ``"auto"``/``"required"``/``"none"``/a name →
  ``{"type": "auto"|"any"|"none"|"tool", "name"?}``; ``parallel_tool_calls=False``
  → ``"disable_parallel_tool_use": true`` in it (with ``{"type": "auto"}`` when no
  choice was given). A ``tool_use`` block streams as ``ToolCallDeltaEvent``\ s: one
  with the call's ``id`` (``toolu_...``) and ``name`` and empty ``arguments`` at its
  ``content_block_start``, then one per non-empty ``input_json_delta`` fragment; its
  ``content_block_stop`` gives the ``ToolCallEvent``. A reply cut by ``max_tokens``
  inside the arguments has no ``content_block_stop`` for that block: no
  ``ToolCallEvent``, ``done.details["incomplete_tool_calls"]`` holds what arrived.
- Server tools (``web_search``, ``web_fetch``, code execution...: offered through
  ``options={"tools": ...}`` in the vendor's own shape) are run by Anthropic: a
  ``server_tool_use`` block becomes one ``ToolCallEvent(server_side=True)`` at its
  ``content_block_stop`` (no deltas); its result block (``web_search_tool_result``
  and the like) is part of the reply the model goes on with, and is not an event.
  A server-side call kept in history is not sent back (its result is not kept).
- History: an assistant turn with ``tool_calls`` → ``content`` ``[text?, {"type":
  "tool_use", "id", "name", "input"}...]``; ``"tool"`` messages → one user turn of
  ``{"type": "tool_result", "tool_use_id", "content", "is_error"?}`` blocks
  (consecutive results merged, a user message right after them joins that turn, as
  the API wants the results right after the call turn).
- ``response_format`` → native structured outputs, ``output_config={"format":
  {"type": "json_schema", "schema": ...}}`` on the ordinary (non-beta) Messages
  call, the schema passed through the SDK's ``anthropic.transform_schema`` (strict:
  ``additionalProperties: false``, unsupported constraints moved into descriptions).
  The JSON arrives as ``text_delta``\ s, i.e. ``TokenEvent``\ s.
- Content parts (all four): image bytes → ``{"type": "image", "source": {"type":
  "base64", "media_type", "data"}}``, image URL → ``"source": {"type": "url",
  "url"}``, PDF → ``{"type": "document", "source": {"type": "base64", "media_type":
  "application/pdf", "data"}}`` or a URL source.
- Usage: ``prompt_tokens`` = input + cache creation + cache read tokens
  (Anthropic's ``input_tokens`` excludes the cached part); ``completion_tokens`` =
  ``output_tokens`` (thinking included, as billed); ``reasoning_tokens`` =
  ``output_tokens_details.thinking_tokens`` when the API sends it, else 0.
  ``message_delta`` usage is cumulative: the last value wins.
- Stop reasons: ``end_turn``/``stop_sequence``/``pause_turn`` → stop,
  ``max_tokens``/``model_context_window_exceeded`` → length, ``tool_use`` →
  tool_calls, ``refusal`` → content_filter; the raw one is in ``details``.

The SDK's hidden retries are off (``max_retries=0``): retrying is
``rxllm.operators.retry_on_interrupt``'s job, where it is visible.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import anthropic
import httpx2

from .. import errors
from ..content import ImagePart, Part, TextPart
from ..events import (
    DoneEvent,
    FinishReason,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    Usage,
)
from ..provider import Provider
from ..request import Message, StreamRequest
from ..tools import complete_call
from ..vendors import vendor
from ._common import ErrorRules, ErrorScope, retry_after_from_headers, transport_failure
from ._post import StreamingPost, body_reads
from ._sse import Event, SSEFramer
from ._typed import TypedError, anthropic_delta

__all__ = ["AnthropicProvider"]

_DEFAULT_MAX_TOKENS = 4096
_MIN_THINKING_BUDGET = 1024
_THINKING_BUDGET: Mapping[object, int] = {
    "low": 1024,
    "medium": 4096,
    True: 4096,
    "high": 16384,
}
_FINISH: Mapping[str, FinishReason] = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}
# The HTTP status each error type has when it is an HTTP error (docs, "HTTP errors"),
# used for the same error arriving in-band as an SSE ``error`` event.
_ERROR_TYPE_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# Options of the provider that go to the SDK client.
_CLIENT_OPTIONS = ("default_headers", "default_query", "http_client")


def _status_error(error: anthropic.APIStatusError, scope: ErrorScope) -> errors.ProviderError:
    message = error.api_message or str(error)
    kind = f"{error.type}: " if error.type else ""
    return scope.status_error(
        error.status_code,
        kind + message,
        retry_after=retry_after_from_headers(error.response.headers),
    )


# The SDK's exceptions → rxllm's (then the rules every vendor shares, in ``_common``).
# How a request is sent: the SDK's ``post`` (see _post). ``create`` turns these two into
# headers rather than body fields, so a request with them goes through ``create``.
_POST = StreamingPost(
    anthropic.resources.AsyncMessages.create,
    "/v1/messages",
    special=frozenset({"user_profile_id", "workspace_id"}),
)

_ERRORS = ErrorRules(
    "Anthropic",
    [
        (anthropic.APIStatusError, _status_error),
        # Connect failures, timeouts (APITimeoutError) and resets, told apart by their cause.
        (anthropic.APIConnectionError, transport_failure),
        (anthropic.AnthropicError, errors.ProviderError),
    ],
    timeout_errors=(anthropic.APITimeoutError,),
)


class AnthropicProvider(Provider[anthropic.AsyncAnthropic]):
    """Claude through ``anthropic.AsyncAnthropic``.

    Example:
        >>> claude = rxllm.provider("anthropic")  # ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
        >>> await claude.generate("Say hi", model="claude-haiku-4-5")
    """

    spec = vendor("anthropic")
    prices_done: ClassVar[bool] = True
    continues_prefill: ClassVar[bool] = True  # Anthropic continues a trailing assistant turn
    content_parts: ClassVar[frozenset[str]] = frozenset(
        {"image", "image_url", "document", "document_url"}
    )

    def _make_client(self) -> anthropic.AsyncAnthropic:
        extra: dict[str, Any] = {k: v for k, v in self.options.items() if k in _CLIENT_OPTIONS}
        if "http_client" not in extra:  # a caller's own http_client keeps its own limits
            # The SDK's default client (keep-alive socket options, proxies from the
            # environment), with a pool of max_connections: more streams wait for a slot.
            limit = self.max_connections
            extra["http_client"] = anthropic.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=limit, max_keepalive_connections=limit)
            )
        return anthropic.AsyncAnthropic(
            api_key=self.api_key.get_secret_value(),
            base_url=self.base_url,
            max_retries=0,
            # timeout= bounds connecting, sending and each read (headers, then every
            # chunk), never the whole stream. Waiting for a pool slot is not bounded: a
            # queued stream has not failed (bound it with timeout(first_token=/total=)).
            timeout=httpx2.Timeout(self.timeout, pool=None),
            **extra,
        )

    async def _close_client(self, client: anthropic.AsyncAnthropic) -> None:
        await client.close()

    # -- request ------------------------------------------------------------------------------

    def _params(self, request: StreamRequest) -> dict[str, Any]:
        turns = request.conversation()
        params: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(turns),
            "stream": True,
        }
        system = request.system_prompt()
        if system is not None:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        max_tokens = request.max_tokens
        budget = _THINKING_BUDGET.get(request.reasoning) if request.reasoning else None
        if budget is not None and (request.prefill or _thinking_unsendable(request)):
            budget = None
        if max_tokens is None:
            # The API requires max_tokens: the provider's default (configurable), raised
            # above the thinking budget so that thinking leaves room for the answer.
            max_tokens = self.max_tokens(request) or _DEFAULT_MAX_TOKENS
            if budget is not None and max_tokens <= budget:
                max_tokens = budget + max_tokens
        elif budget is not None and max_tokens <= budget:
            if max_tokens <= _MIN_THINKING_BUDGET:
                raise errors.InvalidRequestError(
                    f"reasoning on Anthropic needs max_tokens above {_MIN_THINKING_BUDGET} "
                    f"(the smallest thinking budget), got {max_tokens}: raise max_tokens or "
                    "turn reasoning off",
                    provider=self.name,
                    model=request.model,
                )
            budget = max_tokens - 1
        params["max_tokens"] = max_tokens
        if budget is not None:
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if request.tools:
            params["tools"] = [_tool(t.name, t.description, t.parameters) for t in request.tools]
            choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
            if choice is not None:
                params["tool_choice"] = choice
        if request.response_format is not None:
            schema = anthropic.transform_schema(dict(request.response_format.schema))
            params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        params.update(request.options)
        return params

    # -- response -----------------------------------------------------------------------------

    async def _batches(self, request: StreamRequest) -> AsyncIterator[list[StreamEvent]]:
        client = self.client()
        params = self._params(request)
        state = _StreamState(request.model)
        with _ERRORS.scope(
            provider=self.name,
            model=request.model,
            secret=self.api_key.get_secret_value(),
            timeout=self.timeout,
        ) as scope:
            create = client.messages.with_streaming_response.create
            async with _POST.open(client, params, create) as http:
                scope.reading = True
                scope.expect_event_stream(http.headers.get("content-type"), http.status_code)
                # rxllm's own framing, per network read; the event name picks the
                # event before any JSON, and most events are never decoded.
                framer = SSEFramer()
                async for read in body_reads(http):
                    batch: list[StreamEvent] = []  # this read's events
                    try:
                        self._read(framer.feed(read), state, batch, scope)
                    except Exception:
                        if batch:  # what the read brought before the error is delivered
                            yield batch
                        raise
                    if batch:
                        yield batch
            if not state.stopped:
                raise scope.incomplete(f"its message_stop event (after {state.where()})")
            # In the scope: its fields came from the wire.
            yield [self._priced(state.done(self.name, request), request)]

    def _read(
        self,
        events: list[Event],
        state: _StreamState,
        batch: list[StreamEvent],
        scope: ErrorScope,
    ) -> None:
        """Add to ``batch`` what one network read's events say; keep the rest in ``state``."""
        add = batch.append
        loads = json.loads
        for kind, data in events:
            if kind == b"content_block_delta":
                try:  # text and thinking, typed (see _typed)
                    piece = anthropic_delta(data)
                except TypedError:
                    piece = None
                if piece is not None:
                    if piece[0]:
                        if piece[1]:
                            add(ReasoningEvent(piece[1]))
                    else:
                        add(TokenEvent(piece[1]))
                    continue
                body = loads(data)
                delta = body["delta"]
                delta_type = delta["type"]
                if delta_type == "text_delta":
                    add(TokenEvent(delta["text"]))
                elif delta_type == "thinking_delta" and delta["thinking"]:
                    add(ReasoningEvent(delta["thinking"]))
                elif delta_type == "input_json_delta":
                    call = state.calls.get(body["index"])
                    fragment = delta["partial_json"]
                    if call is not None and fragment:
                        call.parts.append(fragment)
                        if not call.server_side:
                            add(ToolCallDeltaEvent(call.index, fragment))
                # signature_delta, citations_delta: not text.
            elif kind == b"content_block_start":
                if b"tool_use" in data:  # text and thinking blocks: nothing to do
                    call = state.open_call(loads(data))
                    if call is not None and not call.server_side:
                        add(ToolCallDeltaEvent(call.index, "", call.id, call.name))
            elif kind == b"content_block_stop":
                if state.calls:
                    call = state.calls.pop(loads(data)["index"], None)
                    if call is not None:
                        add(call.complete(self.name, state.model))
            elif kind == b"message_start":
                state.start(loads(data)["message"])
            elif kind == b"message_delta":
                state.delta(loads(data))
            elif kind == b"message_stop":
                state.stopped = True
            elif kind == b"error":
                raise _in_band_error(data.decode(errors="replace"), scope)
            # ping; and, as the API docs ask of clients,
            # event types added later are ignored rather than fatal.


# -- request shapes -------------------------------------------------------------------------


def _messages(turns: tuple[Message, ...]) -> list[dict[str, Any]]:
    """The conversation in Anthropic's shape (plain text turns stay plain strings)."""
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the open user turn of tool results
    for message in turns:
        if message.role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.text,
            }
            if message.is_error:
                block["is_error"] = True
            if results is None:
                results = []
                out.append({"role": "user", "content": results})
            results.append(block)
            continue
        if message.role == "user" and results is not None:
            # Right after the results, in their turn (the API wants no turn between).
            results.extend(_blocks(message.parts))
            results = None
            continue
        results = None
        if message.role == "assistant" and message.tool_calls:
            content: list[dict[str, Any]] = []
            if message.text:
                content.append({"type": "text", "text": message.text})
            for call in message.tool_calls:
                if not call.server_side:  # its result block is not kept: not sent back
                    content.append(
                        {
                            "type": "tool_use",
                            "id": call.id,
                            "name": call.name,
                            "input": dict(call.arguments),
                        }
                    )
            if content:
                out.append({"role": "assistant", "content": content})
        elif isinstance(message.content, str):
            out.append({"role": message.role, "content": message.content})
        else:
            out.append({"role": message.role, "content": _blocks(message.content)})
    return out


def _thinking_unsendable(request: StreamRequest) -> bool:
    """Whether the API would refuse thinking on this request: a forced tool call
    (``tool_choice`` "required" or a name), or tool results answering the last assistant
    turn's calls (the API wants that turn to start with its signed thinking block, which
    rxllm's history does not keep)."""
    if request.tools and request.tool_choice not in (None, "auto", "none"):
        return True
    for message in reversed(request.conversation()):
        if message.role == "assistant":
            return any(not call.server_side for call in message.tool_calls)
    return False


def _blocks(parts: tuple[Part, ...]) -> list[dict[str, Any]]:
    return [_block(part) for part in parts]


def _block(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    kind = "image" if isinstance(part, ImagePart) else "document"
    source: dict[str, Any]
    if part.data is not None:
        source = {"type": "base64", "media_type": part.media_type, "data": part.base64}
    else:
        source = {"type": "url", "url": part.url}
    return {"type": kind, "source": source}


def _tool(name: str, description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if description:
        out["description"] = description
    out["input_schema"] = dict(schema)
    return out


def _tool_choice(choice: str | None, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None and parallel is not False:
        return None  # the API's default: auto, parallel calls allowed
    if choice == "none":
        return {"type": "none"}  # no calls: nothing to say about parallel ones
    out: dict[str, Any]
    if choice is None or choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    else:
        out = {"type": "tool", "name": choice}
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _in_band_error(data: str, scope: ErrorScope) -> errors.ProviderError:
    """An ``event: error`` mid-stream: the class its type has as an HTTP error."""
    try:
        body = json.loads(data)
        kind = str(body["error"]["type"])
        message = str(body["error"].get("message") or kind)
    except (ValueError, KeyError, TypeError):
        kind, message = "api_error", data or "error event without a body"
    status = _ERROR_TYPE_STATUS.get(kind, 500)
    return scope.status_error(status, f"{kind} in the middle of the stream: {message}")


class _Call:
    """A ``tool_use`` (or ``server_tool_use``) block being streamed."""

    __slots__ = ("id", "index", "name", "parts", "server_side")

    def __init__(self, index: int, call_id: str, name: str, server_side: bool) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.server_side = server_side
        self.parts: list[str] = []

    def complete(self, provider: str, model: str) -> ToolCallEvent:
        event = complete_call(
            index=self.index,
            call_id=self.id,
            name=self.name,
            arguments="".join(self.parts),
            provider=provider,
            model=model,
        )
        if self.server_side:
            return ToolCallEvent(event.id, event.name, event.arguments, event.index, True)
        return event


class _StreamState:
    """What a stream said about itself besides text: ids, usage, stop reason, open calls."""

    __slots__ = (
        "cache_creation",
        "cache_read",
        "call_count",
        "calls",
        "input_tokens",
        "message_id",
        "model",
        "output_tokens",
        "started",
        "stop_reason",
        "stop_sequence",
        "stopped",
        "thinking_tokens",
    )

    def __init__(self, model: str) -> None:
        self.model = model
        self.message_id: str | None = None
        self.input_tokens = 0
        self.cache_creation = 0
        self.cache_read = 0
        self.output_tokens = 0
        self.thinking_tokens = 0
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.started = False
        self.stopped = False
        self.calls: dict[int, _Call] = {}  # by content-block index, until its stop
        self.call_count = 0

    def open_call(self, event: Mapping[str, Any]) -> _Call | None:
        """The call a ``content_block_start`` opens (None for other blocks)."""
        block = event["content_block"]
        kind = block.get("type")
        if kind not in ("tool_use", "server_tool_use"):
            return None  # e.g. web_search_tool_result: the server tool's result
        call = _Call(self.call_count, block["id"], block["name"], kind == "server_tool_use")
        self.call_count += 1
        self.calls[event["index"]] = call
        return call

    def start(self, message: Mapping[str, Any]) -> None:
        self.started = True
        self.message_id = message.get("id")
        self.model = message.get("model") or self.model
        self._usage(message.get("usage") or {})

    def delta(self, event: Mapping[str, Any]) -> None:
        delta = event.get("delta") or {}
        self.stop_reason = delta.get("stop_reason") or self.stop_reason
        self.stop_sequence = delta.get("stop_sequence")
        self._usage(event.get("usage") or {})

    def _usage(self, usage: Mapping[str, Any]) -> None:
        # Cumulative: each value replaces the last one seen.
        self.input_tokens = usage.get("input_tokens") or self.input_tokens
        self.cache_creation = usage.get("cache_creation_input_tokens") or self.cache_creation
        self.cache_read = usage.get("cache_read_input_tokens") or self.cache_read
        self.output_tokens = usage.get("output_tokens") or self.output_tokens
        details = usage.get("output_tokens_details")
        if details:
            self.thinking_tokens = details.get("thinking_tokens") or self.thinking_tokens

    def where(self) -> str:
        return "message_start" if self.started else "no events"

    def done(self, provider: str, request: StreamRequest) -> DoneEvent:
        completion = self.output_tokens
        usage = Usage(
            prompt_tokens=self.input_tokens + self.cache_creation + self.cache_read,
            completion_tokens=completion,
            reasoning_tokens=min(self.thinking_tokens, completion),
        )
        details: dict[str, Any] = {"stop_reason": self.stop_reason, "id": self.message_id}
        if self.stop_sequence is not None:
            details["stop_sequence"] = self.stop_sequence
        if self.cache_read or self.cache_creation:
            details["cache_read_input_tokens"] = self.cache_read
            details["cache_creation_input_tokens"] = self.cache_creation
        ignored = []
        if request.temperature is not None:
            ignored.append("temperature")
        if request.reasoning and _thinking_unsendable(request):
            ignored.append("reasoning")
        if ignored:
            details["ignored"] = tuple(ignored)
        finish = _FINISH.get(self.stop_reason or "end_turn", FinishReason.STOP)
        return DoneEvent(
            usage=usage, finish_reason=finish, model=self.model, provider=provider, details=details
        )

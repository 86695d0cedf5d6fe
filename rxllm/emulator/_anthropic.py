"""The Anthropic Messages dialect: ``POST /v1/messages`` (streamed and not) and ``GET /v1/models``.

Faithful to the captures in ``tests/fixtures/anthropic`` and the API docs:

- SSE flow ``message_start`` (input usage, ``output_tokens`` 1) → ``content_block_start`` →
  ``ping`` (after the first block start) → ``content_block_delta``\\* → ``content_block_stop``
  → ``message_delta`` (stop reason, cumulative usage repeating the input counts) →
  ``message_stop``. With thinking enabled a ``thinking`` block comes first:
  ``thinking_delta``\\* then one ``signature_delta`` then its ``content_block_stop``.
- JSON field order of the real envelope (``model`` first in ``message_start``), compact
  separators, raw UTF-8 (no ``\\u`` escapes), like the API.
- Errors ``{"type":"error","error":{"type":..,"message":..},"request_id":..}`` with the
  status table of https://platform.claude.com/docs/en/api/errors; a ``request-id`` header on
  every answer; ``retry-after`` and ``anthropic-ratelimit-*`` headers on 429; a mid-stream
  ``event: error`` (the docs' verbatim ``overloaded_error`` line).
- Keys arrive as ``x-api-key`` (the API's documented header) or ``Authorization: Bearer``
  (what anthropic 2.x sends); both are accepted, ``x-api-key`` winning as on the API.
- Validation as the API does it: required fields, thinking budget (>= 1024, below
  ``max_tokens``), a prefill with thinking on needs a thinking block, and from
  ``anthropic-version: 2026-10-21`` (what anthropic 2.x sends) no ``temperature`` /
  ``top_p`` / ``top_k`` at all.
- Faults (``rxllm.emulator._behaviour``): before the stream as their HTTP errors;
  mid-stream ``drop`` aborts the socket after ``after`` content deltas, ``truncate``
  ends cleanly without ``message_delta``/``message_stop``, ``error_event`` sends the
  in-band ``overloaded_error``, ``stall`` goes silent until the client leaves. Without
  ``stream`` they become a cut connection, a 529, or a silent wait.

Everything that does not depend on the reply text is encoded once, at import; a content
event costs one ``json.dumps`` of its text. With no pacing, events are written in batches.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from typing import Any

from aiohttp import web

from ._behaviour import KNOB_HEADER
from ._content import Plan, plan_reply, tokenize
from ._http import SseStream, serve_stream
from ._state import EmulatorState, Pacer, RecordedRequest

__all__ = ["routes"]

_MAX_CONTEXT = 200_000
_NO_SAMPLING_VERSION = "2026-10-21"
_BATCH = 64  # events per write when nothing paces the stream

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _frame(event: str, payload: str) -> bytes:
    return f"event: {event}\ndata: {payload}\n\n".encode()


# -- pre-encoded frames --------------------------------------------------------------------

_PING = _frame("ping", '{"type":"ping"}')
_MESSAGE_STOP = _frame("message_stop", '{"type":"message_stop"}')
# Verbatim from the streaming docs ("Error events"), spaces included.
_ERROR_EVENT = _frame(
    "error",
    '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
)
_TEXT_BLOCK_START = tuple(
    _frame(
        "content_block_start",
        f'{{"type":"content_block_start","index":{i},"content_block":{{"type":"text","text":""}}}}',
    )
    for i in range(2)
)
_THINKING_BLOCK_START = _frame(
    "content_block_start",
    '{"type":"content_block_start","index":0,'
    '"content_block":{"type":"thinking","thinking":"","signature":""}}',
)
_BLOCK_STOP = tuple(
    _frame("content_block_stop", f'{{"type":"content_block_stop","index":{i}}}') for i in range(2)
)
# A content delta is prefix + json string + suffix.
_DELTA_PREFIX = tuple(
    (
        f'event: content_block_delta\ndata: {{"type":"content_block_delta","index":{i},'
        f'"delta":{{"type":"{kind}","{field}":'
    ).encode()
    for kind, field in (("text_delta", "text"), ("thinking_delta", "thinking"))
    for i in range(2)
)
_DELTA_SUFFIX = b"}}\n\n"


def _text_delta_prefix(index: int) -> bytes:
    return _DELTA_PREFIX[index]


def _thinking_delta_prefix() -> bytes:
    return _DELTA_PREFIX[2]


# -- small helpers ----------------------------------------------------------------------------

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _ident(prefix: str, length: int = 24) -> str:
    raw = os.urandom(length)
    return prefix + "".join(_B62[b % 62] for b in raw)


def _request_id() -> str:
    return _ident("req_011C")


def _signature(thinking: str) -> str:
    # Opaque like the real one: base64 of bytes derived from the thinking text.
    digest = hashlib.sha512(thinking.encode()).digest()
    return base64.b64encode(digest * 3).decode()


def _error(
    status: int,
    kind: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    request_id = _request_id()
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    all_headers = {"request-id": request_id}
    if status in (408, 409, 429) or status >= 500:
        all_headers["x-should-retry"] = "true"
    all_headers.update(headers or {})
    return web.Response(
        body=_DUMPS(body).encode(),
        status=status,
        headers=all_headers,
        content_type="application/json",
    )


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _rate_limit_headers(retry_after: float) -> dict[str, str]:
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + max(1.0, retry_after)))
    headers = {"retry-after": _seconds(retry_after)}
    for name, limit in (
        ("requests", "50"),
        ("tokens", "38000"),
        ("input-tokens", "30000"),
        ("output-tokens", "8000"),
    ):
        headers[f"anthropic-ratelimit-{name}-limit"] = limit
        headers[f"anthropic-ratelimit-{name}-remaining"] = "0"
        headers[f"anthropic-ratelimit-{name}-reset"] = reset
    return headers


def _auth_error() -> web.Response:
    return _error(401, "authentication_error", "invalid x-api-key")


def _invalid(message: str) -> web.Response:
    return _error(400, "invalid_request_error", message)


def _presented_key(request: web.Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _text_of(content: Any) -> str | None:
    """The text of a message's ``content`` (a string or a list of blocks); None if malformed."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts: list[str] = []
    for block in content:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return None
        if block["type"] == "text":
            if not isinstance(block.get("text"), str):
                return None
            parts.append(block["text"])
    return "".join(parts)


def _first_block_type(content: Any) -> str | None:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        kind = content[0].get("type")
        return kind if isinstance(kind, str) else None
    return "text" if isinstance(content, str) else None


# -- the request, validated ------------------------------------------------------------------


class _Checked:
    """A validated Messages request."""

    __slots__ = ("conversation", "max_tokens", "stop_sequences", "system", "thinking_budget")

    def __init__(
        self,
        conversation: list[tuple[str, str]],
        system: str | None,
        max_tokens: int,
        stop_sequences: list[str],
        thinking_budget: int | None,
    ) -> None:
        self.conversation = conversation
        self.system = system
        self.max_tokens = max_tokens
        self.stop_sequences = stop_sequences
        self.thinking_budget = thinking_budget


def _validate(body: dict[str, Any], version: str) -> _Checked | str:
    """The request, or the API's 400 message for what is wrong with it.

    ``version`` is the ``anthropic-version`` header: from 2026-10-21 (what anthropic 2.x
    sends) the sampling parameters are gone and sending one is a 400, even at its default.
    """
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        return "max_tokens: Input should be a valid integer"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = body["messages"]
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    conversation: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        text = _text_of(message.get("content"))
        if text is None:
            return f"messages.{i}.content: Input should be a valid list"
        if conversation and conversation[-1][0] == role == "user":
            # The API merges consecutive user turns; so do we.
            conversation[-1] = (role, conversation[-1][1] + "\n\n" + text)
        else:
            conversation.append((role, text))
    system_raw = body.get("system")
    system = None if system_raw is None else _text_of(system_raw)
    if system_raw is not None and system is None:
        return "system: Input should be a valid string"
    if version >= _NO_SAMPLING_VERSION:
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                return f"{name}: Extra inputs are not permitted"
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 1
    ):
        return "temperature: Input should be less than or equal to 1"
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        return "stop_sequences: Input should be a valid list of non-empty strings"
    thinking = body.get("thinking")
    budget: int | None = None
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
            return (
                "thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled'"
            )
        if thinking["type"] == "enabled":
            raw_budget = thinking.get("budget_tokens")
            if isinstance(raw_budget, bool) or not isinstance(raw_budget, int):
                return "thinking.enabled.budget_tokens: Field required"
            if raw_budget < 1024:
                return (
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                )
            if max_tokens <= raw_budget:
                return (
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult "
                    "our documentation at https://docs.claude.com/en/docs/build-with-claude/"
                    "extended-thinking#max-tokens-and-context-window-size"
                )
            if temperature is not None and temperature != 1:
                return (
                    "`temperature` may only be set to 1 when thinking is enabled. Please consult "
                    "our documentation at https://docs.claude.com/en/docs/build-with-claude/"
                    "extended-thinking#feature-compatibility"
                )
            last = messages[-1]
            if last.get("role") == "assistant" and _first_block_type(last.get("content")) not in (
                "thinking",
                "redacted_thinking",
            ):
                return (
                    f"messages.{len(messages) - 1}.content.0.type: Expected `thinking` or "
                    "`redacted_thinking`, but "
                    "found `text`. When `thinking` is enabled, a final `assistant` message must "
                    "start with a thinking block (preceeding the lastmost set of `tool_use` and "
                    "`tool_result` blocks). We recommend you include thinking blocks from previous "
                    "turns. To avoid this requirement, disable `thinking`. Please consult our "
                    "documentation at https://docs.claude.com/en/docs/build-with-claude/"
                    "extended-thinking"
                )
            budget = raw_budget
    return _Checked(conversation, system, max_tokens, list(stops), budget)


# -- the reply ---------------------------------------------------------------------------------


class _Reply:
    """A plan with Anthropic's stop reasons applied (stop sequences cut the text)."""

    __slots__ = ("plan", "stop_reason", "stop_sequence", "text_chunks")

    def __init__(self, plan: Plan, stop_sequences: list[str]) -> None:
        self.plan = plan
        self.stop_reason = "max_tokens" if plan.finish == "length" else "end_turn"
        self.stop_sequence: str | None = None
        stopped, sequence = plan.stopped_at(stop_sequences)
        if sequence is not None:
            self.stop_reason = "stop_sequence"
            self.stop_sequence = sequence
        self.text_chunks = stopped.text_chunks()

    @property
    def text(self) -> str:
        return "".join(self.text_chunks)

    @property
    def output_tokens(self) -> int:
        if self.stop_sequence is None:
            return self.plan.completion_tokens
        return self.plan.reasoning_tokens + len(tokenize(self.text))


def _message_start(message_id: str, model: str, input_tokens: int) -> bytes:
    payload = (
        '{"type":"message_start","message":{"model":'
        + _DUMPS(model)
        + ',"id":"'
        + message_id
        + '","type":"message","role":"assistant","content":[],"stop_reason":null,'
        '"stop_sequence":null,"usage":{"input_tokens":'
        + str(input_tokens)
        + ',"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":'
        '{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,'
        '"service_tier":"standard","inference_geo":"not_available"}}}'
    )
    return _frame("message_start", payload)


def _message_delta(reply: _Reply) -> bytes:
    usage: dict[str, Any] = {
        "input_tokens": reply.plan.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": reply.output_tokens,
    }
    if reply.plan.reasoning:
        usage["output_tokens_details"] = {"thinking_tokens": reply.plan.reasoning_tokens}
    payload = {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
        "usage": usage,
    }
    return _frame("message_delta", _DUMPS(payload))


def _content_event(prefix: bytes, text: str) -> bytes:
    return prefix + _DUMPS(text).encode() + _DELTA_SUFFIX


def _stream_frames(reply: _Reply, message_id: str, model: str) -> list[tuple[bytes, int]]:
    """Every frame of the full stream, each with its token count (0: not a content event)."""
    plan = reply.plan
    frames: list[tuple[bytes, int]] = [(_message_start(message_id, model, plan.prompt_tokens), 0)]
    index = 0
    if plan.reasoning:
        frames += [(_THINKING_BLOCK_START, 0), (_PING, 0)]
        prefix = _thinking_delta_prefix()
        size = plan.behaviour.chunk
        frames += [(_content_event(prefix, chunk), size) for chunk in plan.reasoning_chunks()]
        signature = _DUMPS(_signature("".join(plan.reasoning)))
        frames.append(
            (
                _frame(
                    "content_block_delta",
                    '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta",'
                    '"signature":' + signature + "}}",
                ),
                0,
            )
        )
        frames.append((_BLOCK_STOP[0], 0))
        index = 1
    frames.append((_TEXT_BLOCK_START[index], 0))
    if index == 0:
        frames.append((_PING, 0))
    prefix = _text_delta_prefix(index)
    size = plan.behaviour.chunk
    frames += [(_content_event(prefix, chunk), size) for chunk in reply.text_chunks]
    frames += [(_BLOCK_STOP[index], 0), (_message_delta(reply), 0), (_MESSAGE_STOP, 0)]
    return frames


def _message_json(reply: _Reply, message_id: str, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.plan.reasoning:
        thinking = "".join(reply.plan.reasoning)
        content.append(
            {"type": "thinking", "thinking": thinking, "signature": _signature(thinking)}
        )
    content.append({"type": "text", "text": reply.text})
    usage: dict[str, Any] = {
        "input_tokens": reply.plan.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": reply.output_tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }
    if reply.plan.reasoning:
        usage["output_tokens_details"] = {"thinking_tokens": reply.plan.reasoning_tokens}
    return {
        "model": model,
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": usage,
    }


# -- serving -------------------------------------------------------------------------------------


async def _write_stream(
    stream: SseStream, record: RecordedRequest, reply: _Reply, frames: list[tuple[bytes, int]]
) -> None:
    behaviour = reply.plan.behaviour
    fault = behaviour.mid_stream_fault
    pacer = Pacer(behaviour)
    paced = behaviour.tps > 0
    first_content = True
    content_sent = 0
    pending: list[bytes] = []

    async def flush() -> None:
        if pending:
            await stream.send(b"".join(pending) if len(pending) > 1 else pending[0])
            record.events_sent += len(pending) - 1
            pending.clear()

    await stream.start({"request-id": _request_id()})
    for frame, tokens in frames:
        if tokens:
            if fault is not None and content_sent >= behaviour.after:
                break
            if paced or (first_content and behaviour.ttft > 0):
                await flush()
                await pacer.before_content(tokens)
            first_content = False
            content_sent += 1
        pending.append(frame)
        if len(pending) >= _BATCH:
            await flush()
    if fault == "error_event":
        pending.append(_ERROR_EVENT)
    await flush()
    if fault == "drop":
        stream.drop()
    elif fault == "stall":
        await stream.stall()
    else:  # a full stream, or truncate / error_event: a clean end
        await stream.finish()


async def _until_client_leaves() -> None:
    # The server cancels a handler whose client disconnected (handler_cancellation).
    await asyncio.get_running_loop().create_future()


class _Handlers:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def messages(self, request: web.Request) -> web.StreamResponse:
        key = _presented_key(request)
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            if not self.state.key_ok(key):
                return _auth_error()
            return _invalid("There was an error parsing the body of your request: invalid JSON")
        model = body.get("model") if isinstance(body.get("model"), str) else ""
        stream = body.get("stream") is True
        try:
            record = self.state.begin(
                dialect="anthropic",
                endpoint="/v1/messages",
                model=model or "",
                body=body,
                api_key=key,
                stream=stream,
                header_knobs=request.headers.get(KNOB_HEADER),
                headers=dict(request.headers),
            )
        except ValueError as error:
            if not self.state.key_ok(key):
                return _auth_error()
            return _invalid(str(error))
        return await self._answer(request, record, body)

    async def _answer(
        self, request: web.Request, record: RecordedRequest, body: dict[str, Any]
    ) -> web.StreamResponse:
        state = self.state

        def done(response: web.StreamResponse) -> web.StreamResponse:
            state.finish(record, disconnected=False)
            return response

        if not state.key_ok(record.api_key):
            return done(_auth_error())
        version = request.headers.get("anthropic-version")
        if not version:
            return done(_invalid("anthropic-version: header is required"))
        checked = _validate(body, version)
        if isinstance(checked, str):
            return done(_invalid(checked))
        behaviour = record.behaviour
        plan = plan_reply(
            model=record.model,
            conversation=checked.conversation,
            system=checked.system,
            max_tokens=checked.max_tokens,
            want_reasoning=checked.thinking_budget is not None,
            behaviour=behaviour,
        )
        fault = behaviour.before_stream_fault
        if fault is not None:
            return done(
                _fault_response(fault, record.model, plan.prompt_tokens, behaviour.retry_after)
            )
        reply = _Reply(plan, checked.stop_sequences)
        message_id = _ident("msg_01")
        if record.stream:
            frames = _stream_frames(reply, message_id, record.model)
            return await serve_stream(
                state, record, request, lambda s: _write_stream(s, record, reply, frames)
            )
        return await self._answer_json(request, record, reply, message_id)

    async def _answer_json(
        self, request: web.Request, record: RecordedRequest, reply: _Reply, message_id: str
    ) -> web.StreamResponse:
        fault = reply.plan.behaviour.mid_stream_fault
        if fault == "error_event":
            # Without a stream to carry it, the in-band overload is an HTTP 529.
            self.state.finish(record, disconnected=False)
            return _error(529, "overloaded_error", "Overloaded")
        if fault in ("drop", "truncate"):
            transport = request.transport
            if transport is not None:
                transport.abort()
            self.state.finish(record, disconnected=False)
            return web.Response(status=500)  # never reaches the client
        if fault == "stall":
            try:
                await _until_client_leaves()
            except asyncio.CancelledError:
                self.state.finish(record, disconnected=True)
                raise
            self.state.finish(record, disconnected=True)
            return web.Response(status=500)
        payload = _message_json(reply, message_id, record.model)
        self.state.finish(record, disconnected=False)
        return web.Response(
            body=_DUMPS(payload).encode(),
            headers={"request-id": _request_id()},
            content_type="application/json",
        )

    async def models(self, request: web.Request) -> web.Response:
        if not self.state.key_ok(_presented_key(request)):
            return _auth_error()
        data = [_model_info(model) for model in _emulated_models()]
        return _json(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def model(self, request: web.Request) -> web.Response:
        if not self.state.key_ok(_presented_key(request)):
            return _auth_error()
        model_id = request.match_info["model_id"]
        if model_id not in _emulated_models():
            return _error(404, "not_found_error", f"model: {model_id}")
        return _json(_model_info(model_id))


def _json(payload: Any) -> web.Response:
    return web.Response(
        body=_DUMPS(payload).encode(),
        headers={"request-id": _request_id()},
        content_type="application/json",
    )


def _emulated_models() -> list[str]:
    from .. import catalog  # lazily: the catalog may load a data file

    return list(catalog.models("anthropic"))


def _model_info(model_id: str) -> dict[str, Any]:
    words = model_id.removeprefix("claude-").split("-")
    name = words[0].capitalize() + " " + ".".join(words[1:]) if words else model_id
    return {
        "type": "model",
        "id": model_id,
        "display_name": f"Claude {name}".strip(),
        "created_at": "2025-09-29T00:00:00Z",
    }


def _fault_response(fault: str, model: str, prompt_tokens: int, retry_after: float) -> web.Response:
    if fault == "rate_limited":
        return _error(
            429,
            "rate_limit_error",
            "This request would exceed your organization's rate limit of 30,000 input tokens per "
            f"minute (org: 00000000-0000-0000-0000-000000000000, model: {model}). For details, "
            "refer to: https://docs.claude.com/en/api/rate-limits. You can see the response "
            "headers for current usage. Please reduce the prompt length or the maximum tokens "
            "requested, or try again later. You may also contact sales at "
            "https://www.anthropic.com/contact-sales to discuss your options for a rate limit "
            "increase.",
            headers=_rate_limit_headers(retry_after),
        )
    if fault == "overloaded":
        return _error(529, "overloaded_error", "Overloaded")
    if fault == "server_error":
        return _error(500, "api_error", "Internal server error")
    if fault == "invalid_key":
        return _auth_error()
    if fault == "context_too_long":
        too_many = _MAX_CONTEXT + 8310 + prompt_tokens
        return _invalid(f"prompt is too long: {too_many} tokens > {_MAX_CONTEXT} maximum")
    if fault == "model_not_found":
        return _error(404, "not_found_error", f"model: {model}")
    # invalid_request
    return _invalid(
        'messages: roles must alternate between "user" and "assistant", but found multiple '
        '"user" roles in a row'
    )


def routes(state: EmulatorState) -> list[web.RouteDef]:
    handlers = _Handlers(state)
    return [
        web.post("/v1/messages", handlers.messages),
        web.get("/v1/models", handlers.models),
        web.get("/v1/models/{model_id}", handlers.model),
    ]

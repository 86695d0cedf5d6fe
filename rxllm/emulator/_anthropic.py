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
- Tools: ``tools`` (custom tools' ``input_schema``; server tools such as
  ``web_search_20250305`` are accepted and never called), ``tool_choice``
  (``auto``/``any``/``tool``/``none``; ``disable_parallel_tool_use`` makes one call) and
  ``output_config.format`` (``json_schema``, strict: every object needs
  ``additionalProperties: false``) feed the plan. Calls stream as in
  ``anthropic_tool_use.sse``: a ``tool_use`` block (id ``toolu_01`` + 22 base-62
  characters, ``input: {}``) opening with an empty ``input_json_delta``, the JSON in
  fragments, ``content_block_stop``; ``stop_reason: tool_use``. A call cut by
  ``max_tokens`` never gets its ``content_block_stop`` (``anthropic_tool_use_truncated.sse``).
  Argument fragments are content events for faults. History is checked as the API does:
  ``tool_use`` ids need ``tool_result`` blocks in the next (user) turn and results need
  their ``tool_use``; with thinking on, the turn whose calls are answered must start with
  a thinking block; forced tool use and thinking do not mix. ``image`` / ``document``
  blocks (``base64`` with an allowed media type and valid data, or ``url``) are accepted
  in user turns, a malformed one is the API's 400.
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
from dataclasses import replace
from typing import Any

from aiohttp import web

from ._behaviour import KNOB_HEADER
from ._content import Offered, Plan, PlannedCall, plan_reply, tokenize
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


def _tool_turn(messages: list[Any]) -> int:
    """The index of the assistant turn whose calls the last user turn answers, or -1."""
    if len(messages) < 2:
        return -1
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    answers = isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )
    return len(messages) - 2 if answers else -1


def _first_block_type(content: Any) -> str | None:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        kind = content[0].get("type")
        return kind if isinstance(kind, str) else None
    return "text" if isinstance(content, str) else None


# -- the request, validated ------------------------------------------------------------------


class _Checked:
    """A validated Messages request."""

    __slots__ = (
        "conversation",
        "max_tokens",
        "offered",
        "stop_sequences",
        "system",
        "thinking_budget",
    )

    def __init__(
        self,
        conversation: list[tuple[str, str]],
        system: str | None,
        max_tokens: int,
        stop_sequences: list[str],
        thinking_budget: int | None,
        offered: Offered,
    ) -> None:
        self.offered = offered
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
    open_calls: list[str] = []  # tool_use ids of the previous assistant turn
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        turn = _read_turn(i, role, message.get("content"))
        if isinstance(turn, str):
            return turn
        text, calls, results = turn
        if open_calls:
            missing = [c for c in open_calls if c not in [r for r, _ in results]]
            if role != "user" or missing:
                return (
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing or open_calls)}. Each `tool_use` block "
                    "must have a corresponding `tool_result` block in the next message."
                )
        unknown = [r for r, _ in results if r not in open_calls]
        if unknown:
            return (
                f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {unknown[0]}. Each `tool_result` block must have a corresponding "
                "`tool_use` block in the previous message."
            )
        open_calls = calls
        conversation += [("tool", result) for _, result in results]
        if results and not text:
            continue
        if conversation and conversation[-1][0] == role == "user":
            # The API merges consecutive user turns; so do we.
            conversation[-1] = (role, conversation[-1][1] + "\n\n" + text)
        else:
            conversation.append((role, text))
    if open_calls:
        return (
            f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` "
            f"blocks immediately after: {', '.join(open_calls)}. Each `tool_use` block must "
            "have a corresponding `tool_result` block in the next message."
        )
    offered = _offered(body)
    if isinstance(offered, str):
        return offered
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
            at = len(messages) - 1
            if messages[-1].get("role") != "assistant":
                # Answering tool calls: the turn that made them is the "final" one.
                at = _tool_turn(messages)
            last = messages[at] if at >= 0 else {}
            first = _first_block_type(last.get("content"))
            if last.get("role") == "assistant" and first not in (
                "thinking",
                "redacted_thinking",
            ):
                return (
                    f"messages.{at}.content.0.type: Expected `thinking` or "
                    f"`redacted_thinking`, but found `{first}`. When `thinking` is enabled, "
                    "a final `assistant` message must start with a thinking block "
                    "(preceeding the lastmost set of `tool_use` and "
                    "`tool_result` blocks). We recommend you include thinking blocks from previous "
                    "turns. To avoid this requirement, disable `thinking`. Please consult our "
                    "documentation at https://docs.claude.com/en/docs/build-with-claude/"
                    "extended-thinking"
                )
            budget = raw_budget
            if offered.tool_choice not in ("auto", "none"):
                return "Thinking may not be enabled when tool_choice forces tool use."
    return _Checked(conversation, system, max_tokens, list(stops), budget, offered)


_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TurnRead = tuple[str, list[str], list[tuple[str, str]]]


def _read_turn(i: int, role: str, content: Any) -> _TurnRead | str:
    """(text, tool_use ids, (tool_use_id, result text) pairs) of one message, or the 400."""
    if isinstance(content, str):
        return content, [], []
    if not isinstance(content, list):
        return f"messages.{i}.content: Input should be a valid list"
    texts: list[str] = []
    calls: list[str] = []
    results: list[tuple[str, str]] = []
    for j, block in enumerate(content):
        where = f"messages.{i}.content.{j}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return f"{where}: Input should be a valid dictionary"
        kind = block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                return f"{where}.text.text: Field required"
            texts.append(block["text"])
        elif kind in ("image", "document"):
            if role != "user":
                return f"{where}: {kind} blocks are only allowed in user messages"
            problem = _source_problem(f"{where}.{kind}.source", kind, block.get("source"))
            if problem:
                return problem
        elif kind == "tool_use":
            if role != "assistant":
                return f"{where}: tool_use blocks are only allowed in assistant messages"
            for name in ("id", "name", "input"):
                if name not in block:
                    return f"{where}.tool_use.{name}: Field required"
            if not isinstance(block["input"], dict):
                return f"{where}.tool_use.input: Input should be a valid dictionary"
            calls.append(str(block["id"]))
        elif kind == "tool_result":
            if role != "user":
                return f"{where}: tool_result blocks are only allowed in user messages"
            if not isinstance(block.get("tool_use_id"), str):
                return f"{where}.tool_result.tool_use_id: Field required"
            if "is_error" in block and not isinstance(block["is_error"], bool):
                return f"{where}.tool_result.is_error: Input should be a valid boolean"
            result = _text_of(block.get("content", ""))
            if result is None:
                return f"{where}.tool_result.content: Input should be a valid list"
            results.append((block["tool_use_id"], result))
        elif kind not in ("thinking", "redacted_thinking"):
            return (
                f"{where}: Input tag '{kind}' found using 'type' does not match any of the "
                "expected tags"
            )
    return "".join(texts), calls, results


def _source_problem(where: str, kind: str, source: Any) -> str | None:
    """The 400 for a malformed image/document ``source``, or None."""
    if not isinstance(source, dict):
        return f"{where}: Field required"
    form = source.get("type")
    if form == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return f"{where}.url.url: Input should be a valid URL"
        return None
    if form == "base64":
        media = source.get("media_type")
        allowed = _IMAGE_TYPES if kind == "image" else ("application/pdf",)
        if media not in allowed:
            quoted = ", ".join(f"'{m}'" for m in allowed)
            return f"{where}.base64.media_type: Input should be {quoted}"
        data = source.get("data")
        try:
            if not isinstance(data, str) or not data:
                raise ValueError(data)
            base64.b64decode(data, validate=True)
        except ValueError:
            return f"{where}.base64.data: The {kind} data is not valid base64"
        return None
    if kind == "document" and form == "text":
        return None if isinstance(source.get("data"), str) else f"{where}.text.data: Field required"
    return (
        f"{where}: Input tag '{form}' found using 'type' does not match any of the expected "
        "tags: 'base64', 'url'" + (", 'text'" if kind == "document" else "")
    )


def _offered(body: dict[str, Any]) -> Offered | str:
    """The tools, tool_choice and output format of a request, or the 400."""
    tools: list[tuple[str, Any]] = []
    raw_tools = body.get("tools")
    if raw_tools is not None and not isinstance(raw_tools, list):
        return "tools: Input should be a valid list"
    for k, tool in enumerate(raw_tools or []):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            return f"tools.{k}.custom.name: Field required"
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web_search_...): the emulated model never calls it
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            return f"tools.{k}.custom.input_schema: Field required"
        if schema.get("type") != "object":
            return f"tools.{k}.custom.input_schema.type: Input should be 'object'"
        tools.append((tool["name"], schema))
    choice = "auto"
    raw_choice = body.get("tool_choice")
    if raw_choice is not None:
        if not isinstance(raw_choice, dict) or raw_choice.get("type") not in (
            "auto",
            "any",
            "tool",
            "none",
        ):
            return (
                "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', "
                "'tool', 'none'"
            )
        if not raw_tools and raw_choice["type"] != "none":
            return "tool_choice may only be specified while providing tools."
        kind = raw_choice["type"]
        if kind == "any":
            choice = "required"
        elif kind == "tool":
            name = raw_choice.get("name")
            if not isinstance(name, str):
                return "tool_choice.tool.name: Field required"
            if name not in dict(tools):
                return f"Tool '{name}' not found in provided tools"
            choice = name
        else:
            choice = kind
        if "disable_parallel_tool_use" in raw_choice and kind == "none":
            return "tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted"
    schema_out: Any = None
    config = body.get("output_config")
    if config is not None:
        if not isinstance(config, dict):
            return "output_config: Input should be a valid dictionary"
        fmt = config.get("format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
                return "output_config.format.type: Input should be 'json_schema'"
            schema_out = fmt.get("schema")
            if not isinstance(schema_out, dict):
                return "output_config.format.schema: Field required"
            loose = _loose_object(schema_out)
            if loose is not None:
                return (
                    f"output_config.format.schema: For 'object' type, 'additionalProperties' "
                    f"must be explicitly set to false (at {loose})"
                )
    return Offered(tools=tuple(tools), tool_choice=choice, schema=schema_out)


def _loose_object(node: Any, where: str = "#") -> str | None:
    """Where a schema has an object without ``additionalProperties: false`` (strict mode)."""
    if isinstance(node, dict):
        if node.get("type") == "object" and node.get("additionalProperties") is not False:
            return where
        for key, value in node.items():
            found = _loose_object(value, f"{where}/{key}")
            if found:
                return found
    elif isinstance(node, list):
        for k, value in enumerate(node):
            found = _loose_object(value, f"{where}/{k}")
            if found:
                return found
    return None


# -- the reply ---------------------------------------------------------------------------------


class _Reply:
    """A plan with Anthropic's stop reasons applied (stop sequences cut the text)."""

    __slots__ = ("calls", "plan", "stop_reason", "stop_sequence", "text_chunks")

    def __init__(self, plan: Plan, stop_sequences: list[str]) -> None:
        self.plan = plan
        self.stop_reason = {"length": "max_tokens", "tool_calls": "tool_use"}.get(
            plan.finish, "end_turn"
        )
        self.stop_sequence: str | None = None
        self.calls = plan.tool_calls
        stopped, sequence = plan.stopped_at(stop_sequences)
        if sequence is not None:
            self.stop_reason = "stop_sequence"
            self.stop_sequence = sequence
            self.calls = ()  # the model stopped in its text, before any call
        self.text_chunks = stopped.text_chunks()

    @property
    def text(self) -> str:
        return "".join(self.text_chunks)

    @property
    def output_tokens(self) -> int:
        if self.stop_sequence is None:
            return self.plan.completion_tokens
        return self.plan.reasoning_tokens + len(tokenize(self.text))


def _tool_use_id(call: PlannedCall) -> str:
    """``toolu_01`` + 22 base-62 characters, like the API's, from the call's key."""
    number = int(call.key, 16)
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(_B62[digit])
    return "toolu_01" + "".join(chars)


def _cut(call: PlannedCall) -> bool:
    """Whether ``max_tokens`` cut the call's arguments (its block then never stops)."""
    return "".join(call.pieces) != call.arguments


def _tool_frames(call: PlannedCall, index: int, chunk: int) -> list[tuple[bytes, int]]:
    start = {
        "type": "content_block_start",
        "index": index,
        "content_block": {
            "type": "tool_use",
            "id": _tool_use_id(call),
            "name": call.name,
            "input": {},
        },
    }
    prefix = (
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
        f'{index},"delta":{{"type":"input_json_delta","partial_json":'
    ).encode()
    # As on the wire: the block opens with an empty fragment, then the JSON in pieces.
    frames = [(_frame("content_block_start", _DUMPS(start)), 0), (_content_event(prefix, ""), 0)]
    frames += [(_content_event(prefix, part), chunk) for part in _group_pieces(call.pieces, chunk)]
    if not _cut(call):
        frames.append(
            (_frame("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}'), 0)
        )
    return frames


def _group_pieces(pieces: tuple[str, ...], size: int) -> list[str]:
    return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]


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
    size = plan.behaviour.chunk
    if reply.text_chunks or not reply.calls:
        frames.append((_TEXT_BLOCK_START[index], 0))
        if index == 0:
            frames.append((_PING, 0))
        prefix = _text_delta_prefix(index)
        frames += [(_content_event(prefix, chunk), size) for chunk in reply.text_chunks]
        frames.append((_BLOCK_STOP[index], 0))
        index += 1
    for call in reply.calls:
        calls = _tool_frames(call, index, size)
        frames += calls[:1] + ([(_PING, 0)] if index == 0 else []) + calls[1:]
        index += 1
    frames += [(_message_delta(reply), 0), (_MESSAGE_STOP, 0)]
    return frames


def _message_json(reply: _Reply, message_id: str, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.plan.reasoning:
        thinking = "".join(reply.plan.reasoning)
        content.append(
            {"type": "thinking", "thinking": thinking, "signature": _signature(thinking)}
        )
    if reply.text or not reply.calls:
        content.append({"type": "text", "text": reply.text})
    for call in reply.calls:
        try:
            value = json.loads("".join(call.pieces))
        except ValueError:
            value = {}  # cut by max_tokens (or not JSON): what arrived does not parse
        content.append(
            {
                "type": "tool_use",
                "id": _tool_use_id(call),
                "name": call.name,
                "input": value if isinstance(value, dict) else {},
            }
        )
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


async def _write_stream(stream: SseStream, reply: _Reply, frames: list[tuple[bytes, int]]) -> None:
    behaviour = reply.plan.behaviour
    fault = behaviour.mid_stream_fault
    pacer = Pacer(behaviour)
    paced = behaviour.tps > 0
    first_content = True
    content_sent = 0
    pending: list[bytes] = []

    await stream.start({"request-id": _request_id()})
    for frame, tokens in frames:
        if tokens:
            if fault is not None and content_sent >= behaviour.after:
                break
            if paced or (first_content and behaviour.ttft > 0):
                await stream.flush(pending)
                await pacer.before_content(tokens)
            first_content = False
            content_sent += 1
        pending.append(frame)
        if len(pending) >= _BATCH:
            await stream.flush(pending)
    if fault == "error_event":
        pending.append(_ERROR_EVENT)
    await stream.flush(pending)
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
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
            behaviour = replace(behaviour, tool_calls=min(behaviour.tool_calls, 1))
        plan = plan_reply(
            model=record.model,
            conversation=checked.conversation,
            system=checked.system,
            max_tokens=checked.max_tokens,
            want_reasoning=checked.thinking_budget is not None,
            behaviour=behaviour,
            offered=checked.offered,
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
                state, record, request, lambda s: _write_stream(s, reply, frames)
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

"""The OpenAI Chat Completions dialect: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Faithful to what api.openai.com sends (see ``tests/fixtures/openai``):

- a stream is ``data: <chat.completion.chunk>`` events: a role chunk
  (``{"role":"assistant","content":"","refusal":null}``), content deltas, a
  chunk with ``finish_reason`` and an empty ``delta``, then, **only** when
  ``stream_options.include_usage`` is set, a ``choices: []`` chunk with the
  usage; then ``data: [DONE]``. With ``include_usage`` every other chunk carries
  ``"usage":null``. Each chunk has the ``obfuscation`` padding field unless
  ``stream_options.include_obfuscation`` is false.
- tool calls (``tools=[{"type": "function", "function": {...}}]``, ``tool_choice``,
  ``parallel_tool_calls``) stream as in ``tests/fixtures/openai/openai_tool_calls.sse``:
  a role chunk with ``"content": null`` (no ``refusal`` member) when the reply
  starts with a call, then per call one chunk ``{"tool_calls": [{"index", "id":
  "call_<24 base62>", "type": "function", "function": {"name", "arguments": ""}}]}``
  and argument fragments ``{"tool_calls": [{"index", "function": {"arguments"}}]}``;
  the finish chunk says ``"tool_calls"`` (``"length"`` when ``max_completion_tokens``
  cut the arguments). Argument fragments count as content chunks for ``after=``.
  ``parallel_tool_calls: false`` makes at most one call per reply.
- history: an assistant message's ``tool_calls`` and ``tool`` messages are checked
  as the API checks them (each call answered by a ``tool`` message, each ``tool``
  message answering a call before it) and go to the plan as tool turns.
- structured output: ``response_format`` ``json_schema`` → the reply is JSON fitting
  the schema, streamed as content; ``strict: true`` with a schema strict mode
  cannot take (an object without ``additionalProperties: false`` or with a
  property not in ``required``) is the real 400 ``invalid_json_schema``.
- content parts: ``text``, ``image_url`` (an https URL or a ``data:image/...;base64``
  URL of png/jpeg/gif/webp) and ``file`` (``filename`` + a
  ``data:application/pdf;base64`` ``file_data``, or a ``file_id``) in user
  messages; anything else is the real 400 for it.
- reasoning models (``gpt-5*``, ``o1``/``o3``/``o4*``) spend reasoning tokens
  but Chat Completions never streams reasoning text: they only show in
  ``usage.completion_tokens_details.reasoning_tokens``. The emulator reasons
  when the request sets ``reasoning_effort`` (other than ``minimal``/``none``)
  or the ``reasoning=on`` knob forces it.
- errors are ``{"error": {"message", "type", "param", "code"}}`` with the real
  status codes: 401 ``invalid_api_key``, 400 ``invalid_request_error``
  (``context_length_exceeded``), 404 ``model_not_found``, 429
  ``rate_limit_exceeded`` with ``retry-after``/``retry-after-ms`` and the
  ``x-ratelimit-*`` headers, 500 ``server_error``, 503 overloaded; an error in
  the middle of a stream is a ``data: {"error": {...}}`` frame, then ``[DONE]``.

Everything but the delta text of a chunk is encoded once per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import math
import random
import string
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from ._behaviour import KNOB_HEADER, Behaviour
from ._content import Offered, Plan, PlannedCall, plan_reply
from ._http import SseStream, json_response, serve_stream
from ._state import EmulatorState, Pacer, RecordedRequest

__all__ = ["routes"]

_DONE = b"data: [DONE]\n\n"
# Flush coalesced events once this many are waiting (unpaced streams only): one socket write
# per event would make the emulator, not the client under test, the bottleneck.
_BATCH = 32

_REASONING_PREFIXES = ("gpt-5", "o1", "o3", "o4")
_NO_REASONING_EFFORTS = ("minimal", "none")


def _obfuscation_table() -> tuple[bytes, ...]:
    # Real chunks carry random-length padding so chunk sizes do not leak token lengths;
    # the emulator cycles through a fixed, seeded table (deterministic output).
    rng = random.Random(20250814)
    alphabet = string.ascii_letters + string.digits
    return tuple(
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16))).encode()
        for _ in range(61)
    )


_OBFUSCATION = _obfuscation_table()


def is_reasoning_model(model: str) -> bool:
    return model.startswith(_REASONING_PREFIXES)


def _fingerprint(model: str) -> str | None:
    # gpt-5 streams send "system_fingerprint": null (captured from gpt-5-nano).
    if model.startswith("gpt-5"):
        return None
    return "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]


# -- error bodies ------------------------------------------------------------------------------


def _error_body(message: str, type_: str, param: str | None, code: str | None) -> bytes:
    # api.openai.com pretty-prints its error bodies with four spaces.
    payload = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return (json.dumps(payload, indent=4, ensure_ascii=False) + "\n").encode()


def _request_id(seed: str) -> str:
    return "req_" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def _error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    all_headers = {"x-request-id": _request_id(f"{status}{message}{time.monotonic_ns()}")}
    all_headers.update(headers or {})
    return web.Response(
        body=_error_body(message, type_, param, code),
        status=status,
        headers=all_headers,
        content_type="application/json",
    )


def _masked(key: str) -> str:
    # The API echoes a wrong key masked, as "sk-abc***...***wxyz"; never the key itself.
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def _auth_error(presented: str | None) -> web.Response:
    if not presented:
        return _error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or "
            "as the password field (with blank username) if you're accessing the API from your "
            "browser and are prompted for a username and password. You can obtain an API key "
            "from https://platform.openai.com/account/api-keys.",
        )
    return _error(
        401,
        f"Incorrect API key provided: {_masked(presented)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def _fault_response(fault: str, model: str, behaviour: Behaviour, key: str | None) -> web.Response:
    """A before-stream fault as api.openai.com answers it."""
    if fault == "rate_limited":
        wait = behaviour.retry_after
        return _error(
            429,
            f"Rate limit reached for {model} in organization org-Emulator00000000000000000 on "
            f"tokens per min (TPM): Limit 30000, Used 30000, Requested 890. Please try again "
            f"in {wait:g}s. Visit https://platform.openai.com/account/rate-limits to learn more.",
            "tokens",
            code="rate_limit_exceeded",
            headers={
                # The SDK prefers retry-after-ms (sub-second precision); retry-after is whole
                # seconds as HTTP defines it.
                "retry-after": str(math.ceil(wait)),
                "retry-after-ms": str(round(wait * 1000)),
                "x-ratelimit-limit-requests": "500",
                "x-ratelimit-limit-tokens": "30000",
                "x-ratelimit-remaining-requests": "499",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-requests": "120ms",
                "x-ratelimit-reset-tokens": f"{wait:g}s",
            },
        )
    if fault == "overloaded":
        return _error(
            503, "The engine is currently overloaded, please try again later.", "server_error"
        )
    if fault == "server_error":
        return _error(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )
    if fault == "invalid_key":
        return _auth_error(key or "sk-emulator-fault")
    if fault == "context_too_long":
        return _error(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 131072 tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        )
    if fault == "model_not_found":
        return _error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return _error(
        400,
        "Invalid value for 'messages': the emulator was asked to reject this request "
        "(fault=invalid_request).",
        param="messages",
        code="invalid_value",
    )


# -- request parsing ---------------------------------------------------------------------------


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _text(content: Any) -> str:
    """Message content: a string or a list of parts (only text parts count)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def _validate(body: dict[str, Any], model: str) -> web.Response | None:
    """The 400s the real API gives for a malformed request (checked after authentication)."""
    messages = body.get("messages")
    if not model:
        return _error(400, "you must provide a model parameter")
    if messages is None:
        return _error(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list) or not messages:
        return _error(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            return _error(
                400,
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
    for check in (_check_history, _check_parts, _check_tools, _check_response_format):
        problem = check(body)
        if problem is not None:
            return problem
    if is_reasoning_model(model) and body.get("max_tokens") is not None:
        # Verbatim from the API (tests/fixtures/openai/openai_400.json).
        return _error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    effort = body.get("reasoning_effort")
    if effort is not None and not is_reasoning_model(model):
        return _error(
            400,
            "Unrecognized request argument supplied: reasoning_effort",
            param="reasoning_effort",
            code="unsupported_parameter",
        )
    if effort is not None and effort not in ("none", "minimal", "low", "medium", "high"):
        return _error(
            400,
            f"Invalid value: '{effort}'. Supported values are: 'minimal', 'low', 'medium', "
            "and 'high'.",
            param="reasoning_effort",
            code="invalid_value",
        )
    return None


def _missing(param: str) -> web.Response:
    return _error(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _invalid_value(param: str, value: object, supported: str) -> web.Response:
    return _error(
        400,
        f"Invalid value: '{value}'. Supported values are: {supported}.",
        param=param,
        code="invalid_value",
    )


def _check_history(body: dict[str, Any]) -> web.Response | None:
    """Tool calls and results in ``messages`` as the API checks them."""
    open_calls: dict[str, int] = {}  # ids of the last assistant turn's calls not yet answered
    answerable: set[str] = set()
    for i, message in enumerate(body["messages"]):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                return _missing(f"messages[{i}].tool_call_id")
            if call_id not in answerable:
                return _error(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",  # sic, as the API spells it
                    param=f"messages.[{i}].role",
                )
            open_calls.pop(call_id, None)
            continue
        if open_calls:
            return _unanswered(open_calls)
        answerable = set()
        calls = message.get("tool_calls") if role == "assistant" else None
        if calls is None:
            continue
        if not isinstance(calls, list):
            return _error(
                400,
                f"Invalid type for 'messages[{i}].tool_calls': expected an array, but got "
                f"{type(calls).__name__} instead.",
                param=f"messages[{i}].tool_calls",
                code="invalid_type",
            )
        for j, call in enumerate(calls):
            where = f"messages[{i}].tool_calls[{j}]"
            if not isinstance(call, dict) or not isinstance(call.get("id"), str):
                return _missing(f"{where}.id")
            if call.get("type") != "function":
                return (
                    _missing(f"{where}.type")
                    if "type" not in call
                    else _invalid_value(
                        f"{where}.type", call.get("type"), "'function' and 'custom'"
                    )
                )
            function = call.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                return _missing(f"{where}.function.name")
            if not isinstance(function.get("arguments"), str):
                return _missing(f"{where}.function.arguments")
            open_calls[call["id"]] = i
        answerable = set(open_calls)
    if open_calls:
        return _unanswered(open_calls)
    return None


def _unanswered(open_calls: dict[str, int]) -> web.Response:
    where = min(open_calls.values())
    return _error(
        400,
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(open_calls),
        param=f"messages.[{where}].role",
    )


_PART_TYPES = "'text', 'image_url', 'input_audio', 'refusal', 'audio', and 'file'"
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def _data_url(url: str) -> tuple[str, bytes] | None:
    """(media type, bytes) of a ``data:<type>;base64,<data>`` URL; ``None`` if malformed."""
    head, comma, data = url.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64"):
        return None
    try:
        return head[5:-7], base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_parts(body: dict[str, Any]) -> web.Response | None:
    """Content parts: their types, and the image and file shapes the API accepts."""
    for i, message in enumerate(body["messages"]):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        role = message.get("role")
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind is None:
                return _missing(f"{where}.type")
            if kind not in ("text", "image_url", "input_audio", "refusal", "audio", "file"):
                return _invalid_value(f"{where}.type", kind, _PART_TYPES)
            if kind == "text" and not isinstance(part.get("text"), str):
                return _missing(f"{where}.text")
            if kind == "image_url":
                if role != "user":
                    return _error(
                        400,
                        f"Invalid 'messages[{i}]'. Image URLs are only allowed for messages "
                        f"with role 'user', but this message with role '{role}' contains an "
                        "image URL.",
                        param=f"messages[{i}]",
                        code="invalid_value",
                    )
                problem = _check_image(part.get("image_url"), f"{where}.image_url")
                if problem is not None:
                    return problem
            if kind == "file":
                problem = _check_file(part.get("file"), f"{where}.file")
                if problem is not None:
                    return problem
    return None


def _check_image(image: Any, where: str) -> web.Response | None:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        return _missing(f"{where}.url")
    if url.startswith(("https://", "http://")):
        return None
    decoded = _data_url(url) if url.startswith("data:") else None
    if decoded is None:
        return _error(
            400,
            f"Invalid '{where}.url'. Expected a valid URL, but got a value with an invalid format.",
            param=f"{where}.url",
            code="invalid_value",
        )
    if decoded[0] not in _IMAGE_TYPES or not decoded[1]:
        return _error(
            400,
            "You uploaded an unsupported image. Please make sure your image has of one the "
            "following formats: ['png', 'jpeg', 'gif', 'webp'].",  # sic
            param=None,
            code="invalid_image_format",
        )
    return None


def _check_file(file: Any, where: str) -> web.Response | None:
    if not isinstance(file, dict):
        return _missing(where)
    if "file_id" in file:
        return None
    data = file.get("file_data")
    if not isinstance(data, str):
        return _missing(f"{where}.file_data")
    if not isinstance(file.get("filename"), str):
        return _missing(f"{where}.filename")
    decoded = _data_url(data)
    if decoded is None or decoded[0] != "application/pdf" or not decoded[1].startswith(b"%PDF-"):
        got = f"unsupported MIME type '{decoded[0]}'" if decoded else "an invalid data URL"
        return _error(
            400,
            f"Invalid file data: '{where}.file_data'. Expected a base64-encoded data URL with "
            "an application/pdf MIME type (e.g. "
            f"'data:application/pdf;base64,SGVsbG8sIFdvcmxkIQ=='), but got {got}.",
            param=f"{where}.file_data",
            code="invalid_value",
        )
    return None


_TOOL_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_-")


def _check_tools(body: dict[str, Any]) -> web.Response | None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return _error(
                400,
                f"Invalid type for 'tools': expected an array, but got {type(tools).__name__} "
                "instead.",
                param="tools",
                code="invalid_type",
            )
        for i, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind is None:
                return _missing(f"tools[{i}].type")
            if kind != "function":
                return _invalid_value(f"tools[{i}].type", kind, "'function' and 'custom'")
            function = tool.get("function")
            if not isinstance(function, dict):
                return _missing(f"tools[{i}].function")
            name = function.get("name")
            if not isinstance(name, str):
                return _missing(f"tools[{i}].function.name")
            if not name or len(name) > 64 or not set(name) <= _TOOL_NAME_CHARS:
                return _error(
                    400,
                    f"Invalid 'tools[{i}].function.name': string does not match pattern. "
                    "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                    param=f"tools[{i}].function.name",
                    code="invalid_value",
                )
    names = [t["function"]["name"] for t in tools or ()]
    for field in ("tool_choice", "parallel_tool_calls"):
        if body.get(field) is not None and not names:
            return _error(
                400,
                f"Invalid value for '{field}': '{field}' is only allowed when 'tools' are "
                "specified.",
                param=field,
            )
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in ("none", "auto", "required"):
        return _invalid_value("tool_choice", choice, "'none', 'auto', and 'required'")
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if choice.get("type") != "function" or not isinstance(name, str):
            return _missing("tool_choice.function.name")
        if name not in names:
            # Representative wording (the API names the tool it could not find).
            return _error(
                400,
                f"Invalid value for 'tool_choice': function '{name}' is not one of the tools "
                "in 'tools'.",
                param="tool_choice",
            )
    return None


def _check_response_format(body: dict[str, Any]) -> web.Response | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        return _missing("response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str):
        return _missing("response_format.json_schema.name")
    schema = spec.get("schema")
    if spec.get("strict") is True and isinstance(schema, dict):
        problem = _not_strict(schema, ())
        if problem is not None:
            return _error(
                400,
                f"Invalid schema for response_format '{name}': {problem}",
                param="response_format",
                code="invalid_json_schema",
            )
    return None


def _not_strict(schema: Mapping[str, Any], context: tuple[str, ...]) -> str | None:
    """Why strict mode refuses ``schema`` (the API's wording), or ``None``."""
    where = f"In context=({', '.join(repr(c) for c in context)}{',' if len(context) == 1 else ''})"
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return f"{where}, 'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties") or {}
        missing = [key for key in properties if key not in (schema.get("required") or ())]
        if missing:
            return (
                f"{where}, 'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'."
            )
        for key, sub in properties.items():
            if isinstance(sub, dict):
                problem = _not_strict(sub, (*context, "properties", key))
                if problem is not None:
                    return problem
    for keyword in ("items",):
        sub = schema.get(keyword)
        if isinstance(sub, dict):
            problem = _not_strict(sub, (*context, keyword))
            if problem is not None:
                return problem
    for keyword in ("anyOf", "$defs", "definitions"):
        subs = schema.get(keyword)
        items = subs.items() if isinstance(subs, dict) else enumerate(subs or ())
        for key, sub in items:
            if isinstance(sub, dict):
                problem = _not_strict(sub, (*context, keyword, str(key)))
                if problem is not None:
                    return problem
    return None


def _offered(body: dict[str, Any]) -> Offered:
    tools = tuple(
        (t["function"]["name"], t["function"].get("parameters") or {"type": "object"})
        for t in body.get("tools") or ()
    )
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        choice = choice["function"]["name"]
    schema = None
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        raw = fmt["json_schema"].get("schema")
        schema = raw if isinstance(raw, dict) else {"type": "object"}
    return Offered(
        tools=tools, tool_choice=choice if isinstance(choice, str) else "auto", schema=schema
    )


def _plan(body: dict[str, Any], model: str, behaviour: Behaviour) -> Plan:
    system: list[str] = []
    conversation: list[tuple[str, str]] = []
    for message in body["messages"]:
        role = message.get("role")
        text = _text(message.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "assistant":
            conversation.append(("assistant", text))
        elif role == "tool":
            conversation.append(("tool", text))
        else:
            conversation.append(("user", text))
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    effort = body.get("reasoning_effort")
    if body.get("parallel_tool_calls") is False and behaviour.tool_calls > 1:
        behaviour = replace(behaviour, tool_calls=1)  # one call per reply
    plan = plan_reply(
        model=model,
        conversation=conversation,
        system="\n\n".join(system) if system else None,
        max_tokens=limit if isinstance(limit, int) and limit > 0 else None,
        want_reasoning=effort is not None and effort not in _NO_REASONING_EFFORTS,
        behaviour=behaviour,
        offered=_offered(body),
    )
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in stop or () if isinstance(s, str)]
    return _apply_stop(plan, [s for s in stops if s])


def _apply_stop(plan: Plan, stops: list[str]) -> Plan:
    """Cut the reply before the first stop sequence (finish reason ``stop``)."""
    return plan.stopped_at(stops)[0]


# -- the stream --------------------------------------------------------------------------------


class _Chunks:
    """Encodes the chunks of one completion; the envelope is built once."""

    def __init__(self, completion_id: str, model: str, *, usage_null: bool, obfuscate: bool):
        self.completion_id = completion_id
        created = int(time.time())
        fingerprint = _fingerprint(model)
        # Captured reasoning-model streams (o3-mini, gpt-5-nano) carry no "logprobs" member.
        logprobs = b"" if is_reasoning_model(model) else b'"logprobs":null,'
        head = json.dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": fingerprint,
            },
            separators=(",", ":"),
        )
        self._head = b"data: " + head[:-1].encode() + b',"choices":'
        self._delta_head = self._head + b'[{"index":0,"delta":{"content":'
        self._delta_tail = b"}," + logprobs + b'"finish_reason":null}]'
        self._logprobs = logprobs
        self._usage_null = b',"usage":null' if usage_null else b""
        self._obfuscate = obfuscate
        self._padding = itertools.cycle(_OBFUSCATION)

    def _padding_end(self) -> bytes:
        if self._obfuscate:
            return b',"obfuscation":"' + next(self._padding) + b'"}\n\n'
        return b"}\n\n"

    def _end(self) -> bytes:
        return self._usage_null + self._padding_end()

    def role(self) -> bytes:
        return (
            self._head
            + b'[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
            + self._logprobs
            + b'"finish_reason":null}]'
            + self._end()
        )

    def role_before_calls(self) -> bytes:
        # A reply that starts with a tool call: "content": null and no "refusal" member
        # (tests/fixtures/openai/openai_tool_calls.sse).
        return (
            self._head
            + b'[{"index":0,"delta":{"role":"assistant","content":null},'
            + self._logprobs
            + b'"finish_reason":null}]'
            + self._end()
        )

    def call_start(self, call: PlannedCall) -> bytes:
        start = {
            "index": call.index,
            "id": call_id(call),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        return self._tool_calls(json.dumps(start, separators=(",", ":"), ensure_ascii=False))

    def call_arguments(self, index: int, arguments: str) -> bytes:
        fragment = json.dumps(arguments, ensure_ascii=False)
        return self._tool_calls(f'{{"index":{index},"function":{{"arguments":{fragment}}}}}')

    def _tool_calls(self, entry: str) -> bytes:
        return (
            self._head
            + b'[{"index":0,"delta":{"tool_calls":['
            + entry.encode()
            + b"]},"
            + self._logprobs
            + b'"finish_reason":null}]'
            + self._end()
        )

    def content(self, text: str) -> bytes:
        encoded = json.dumps(text, ensure_ascii=False).encode()
        return self._delta_head + encoded + self._delta_tail + self._end()

    def finish(self, reason: str) -> bytes:
        return (
            self._head
            + b'[{"index":0,"delta":{},'
            + self._logprobs
            + b'"finish_reason":"'
            + reason.encode()
            + b'"}]'
            + self._end()
        )

    def usage(self, plan: Plan) -> bytes:
        usage = json.dumps(_usage(plan), separators=(",", ":")).encode()
        return self._head + b'[],"usage":' + usage + self._padding_end()


_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def call_id(call: PlannedCall) -> str:
    """``call_`` and 24 letters and digits, as api.openai.com shapes a call id."""
    number = int(hashlib.sha256(call.key.encode()).hexdigest(), 16)
    chars = []
    for _ in range(24):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "call_" + "".join(chars)


def _usage(plan: Plan) -> dict[str, Any]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": plan.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _stream_error_frame() -> bytes:
    # As api.openai.com sends it in a 200 stream (tests/fixtures/openai/openai_stream_error.sse).
    payload = {
        "error": {
            "message": "The server had an error processing your request. Sorry about that! You "
            "can retry your request, or contact us through our help center at help.openai.com "
            "if you keep seeing this error.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


_STREAM_ERROR = _stream_error_frame()


def _content_frames(plan: Plan, chunks: _Chunks) -> Iterator[tuple[tuple[bytes, ...], int]]:
    """The content events of a reply: the text chunks, then each call's argument
    fragments (its start chunk goes out with the first one, so ``after=`` counts text
    and argument fragments only); with the tokens each carries."""
    size = max(1, plan.behaviour.chunk)
    for text in plan.text_chunks():
        yield (chunks.content(text),), size
    for call in plan.tool_calls:
        start = chunks.call_start(call)
        pieces = call.pieces
        if not pieces:
            yield (start,), 0
        for at in range(0, len(pieces), size):
            fragment = chunks.call_arguments(call.index, "".join(pieces[at : at + size]))
            yield ((start, fragment) if at == 0 else (fragment,)), size


def _stream_body(
    plan: Plan, chunks: _Chunks, *, include_usage: bool
) -> Callable[[SseStream], Awaitable[None]]:
    behaviour = plan.behaviour
    fault = behaviour.mid_stream_fault

    async def body(stream: SseStream) -> None:
        await stream.start({"x-request-id": _request_id(chunks.completion_id)})
        starts_with_call = bool(plan.tool_calls) and not plan.text
        pending: list[bytes] = [chunks.role_before_calls() if starts_with_call else chunks.role()]
        paced = behaviour.tps > 0
        pacer = Pacer(behaviour)

        for index, (frames, tokens) in enumerate(_content_frames(plan, chunks)):
            if fault is not None and index >= behaviour.after:
                break
            if index == 0:
                await stream.flush(pending)
                if paced and plan.reasoning_tokens:
                    # Reasoning is invisible in Chat Completions: it only delays the reply.
                    await asyncio.sleep(plan.reasoning_tokens / behaviour.tps)
            await pacer.before_content(tokens)
            pending.extend(frames)
            if paced or len(pending) >= _BATCH:
                await stream.flush(pending)
        if fault == "drop":
            await stream.flush(pending)
            stream.drop()
            return
        if fault == "truncate":
            await stream.flush(pending)
            await stream.finish()
            return
        if fault == "stall":
            await stream.flush(pending)
            await stream.stall()
            return
        if fault == "error_event":
            pending.append(_STREAM_ERROR)
            pending.append(_DONE)
            await stream.flush(pending)
            await stream.finish()
            return
        pending.append(chunks.finish(plan.finish))
        if include_usage:
            pending.append(chunks.usage(plan))
        pending.append(_DONE)
        await stream.flush(pending)
        await stream.finish()

    return body


# -- non-streaming -----------------------------------------------------------------------------


def _completion(completion_id: str, plan: Plan) -> dict[str, Any]:
    text = "".join(plan.text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not plan.tool_calls else None,
    }
    if plan.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id(call),
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.pieces)},
            }
            for call in plan.tool_calls
        ]
    message["refusal"] = None
    message["annotations"] = []
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": plan.finish,
            }
        ],
        "usage": _usage(plan),
        "service_tier": "default",
        "system_fingerprint": _fingerprint(plan.model),
    }


async def _until_client_leaves(request: web.Request) -> None:
    # aiohttp offers no "client gone" event outside handler cancellation: poll the transport.
    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def _answer_whole(
    state: EmulatorState, record: RecordedRequest, request: web.Request, plan: Plan, cid: str
) -> web.StreamResponse:
    """The non-streaming answer, with mid-stream faults in the shape a whole response can take."""
    behaviour = plan.behaviour
    fault = behaviour.mid_stream_fault
    try:
        if behaviour.ttft > 0:
            await asyncio.sleep(behaviour.ttft)
        if behaviour.tps > 0:
            await asyncio.sleep(plan.completion_tokens / behaviour.tps)
        if fault == "stall":
            await _until_client_leaves(request)
            state.finish(record, disconnected=True)
            return web.Response(status=200)  # nobody reads it: the client has gone
    except asyncio.CancelledError:
        state.finish(record, disconnected=True)
        raise
    if fault in ("drop", "truncate"):
        # A connection cut before the body: the client sees the server disconnect.
        state.finish(record, disconnected=False)
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=200)
    if fault == "error_event":
        state.finish(record, disconnected=False)
        return _fault_response("server_error", record.model, behaviour, record.api_key)
    state.finish(record, disconnected=False)
    return json_response(_completion(cid, plan), headers={"x-request-id": _request_id(cid)})


# -- handlers ----------------------------------------------------------------------------------


def routes(state: EmulatorState) -> list[web.RouteDef]:
    counter = itertools.count(1)

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        key = _bearer(request)
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if not state.key_ok(key):
                return _auth_error(key)
            return _error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload, but what was sent was not valid JSON. If you have trouble figuring "
                "out how to fix this, please contact us through our help center at "
                "help.openai.com.)",
            )
        model_field = body.get("model")
        stream = body.get("stream") is True
        try:
            record = state.begin(
                dialect="openai",
                endpoint="/v1/chat/completions",
                model=model_field if isinstance(model_field, str) else "",
                body=body,
                api_key=key,
                stream=stream,
                header_knobs=request.headers.get(KNOB_HEADER),
                headers=dict(request.headers),
            )
        except ValueError as error:
            if not state.key_ok(key):
                return _auth_error(key)
            return _error(400, f"Invalid emulator knobs: {error}", param="model")

        def answer(response: web.Response) -> web.Response:
            state.finish(record, disconnected=False)
            return response

        if not state.key_ok(key):
            return answer(_auth_error(key))
        invalid = _validate(body, record.model)
        if invalid is not None:
            return answer(invalid)
        behaviour = record.behaviour
        if behaviour.before_stream_fault is not None:
            return answer(
                _fault_response(behaviour.before_stream_fault, record.model, behaviour, key)
            )
        plan = _plan(body, record.model, behaviour)
        cid = f"chatcmpl-Emu{next(counter):06d}" + hashlib.sha256(raw).hexdigest()[:20]
        if not stream:
            return await _answer_whole(state, record, request, plan, cid)
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        chunks = _Chunks(
            cid,
            record.model,
            usage_null=include_usage,
            obfuscate=options.get("include_obfuscation", True) is not False,
        )
        return await serve_stream(
            state, record, request, _stream_body(plan, chunks, include_usage=include_usage)
        )

    def _listed() -> list[str]:
        from .. import catalog  # lazily: the catalog loads its data file

        return list(catalog.models("openai"))

    def _model(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1715367049, "owned_by": "system"}

    async def list_models(request: web.Request) -> web.Response:
        key = _bearer(request)
        if not state.key_ok(key):
            return _auth_error(key)
        return json_response({"object": "list", "data": [_model(m) for m in _listed()]})

    async def retrieve_model(request: web.Request) -> web.Response:
        key = _bearer(request)
        if not state.key_ok(key):
            return _auth_error(key)
        model_id = request.match_info["model"]
        if model_id not in _listed():
            return _error(
                404,
                f"The model '{model_id}' does not exist",
                param="model",
                code="model_not_found",
            )
        return json_response(_model(model_id))

    return [
        web.post("/v1/chat/completions", chat_completions),
        web.get("/v1/models", list_models),
        web.get("/v1/models/{model}", retrieve_model),
    ]

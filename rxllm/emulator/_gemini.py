"""Gemini API dialect (``generativelanguage.googleapis.com``), as google-genai drives it.

Routes (relative to the emulator's ``/gemini`` prefix; the SDK's ``base_url`` is that
prefix and it adds the API version itself):

- ``POST /{version}/models/{model}:streamGenerateContent?alt=sse``: server-sent events
  ``data: <json>\\r\\n\\r\\n``, no ``[DONE]``; the stream ends at EOF. Every event carries
  the *cumulative* ``usageMetadata``; the last candidate chunk carries ``finishReason``.
- ``POST /{version}/models/{model}:generateContent``: the whole response as one JSON.
- ``GET /{version}/models`` and ``GET /{version}/models/{model}``: Google's model list.

Wire details follow real captures (see ``tests/fixtures/gemini/SOURCES.md``): JSON with
``", "``-less separators (``{"a": 1,"b": 2}``), raw UTF-8, field order
``candidates / usageMetadata / modelVersion / responseId``; ``candidatesTokenCount`` and
``thoughtsTokenCount`` only when non-zero; ``totalTokenCount`` = prompt + candidates +
thoughts. Errors are Google's ``{"error": {code, message, status, details}}``, 2-space
pretty-printed: a wrong key is **400** ``INVALID_ARGUMENT`` with ``ErrorInfo`` reason
``API_KEY_INVALID`` (not 401), a missing key 403 ``PERMISSION_DENIED``, a rate limit 429
``RESOURCE_EXHAUSTED`` whose ``google.rpc.RetryInfo`` detail carries the delay (the API
sends no ``Retry-After`` header). A mid-stream error is a ``data: {"error": ...}`` event.

Tools, structured output, content parts (as google-genai sends them: top-level fields
camelCase, nested ones sometimes snake_case; both are read):

- ``tools[].functionDeclarations[]`` (``parametersJsonSchema``, else the OpenAPI
  ``parameters``), ``toolConfig.functionCallingConfig`` (``mode`` AUTO / NONE / ANY,
  ``allowedFunctionNames``) and ``generationConfig.responseJsonSchema`` (or
  ``responseSchema``; ``responseMimeType`` must then be ``application/json``).
- Calls stream as in ``tests/fixtures/gemini/gemini_tool_call.jsonl``: after any text,
  one event holds every call, ``{functionCall: {name, args}}`` parts (no ``id``, as the
  API sends none), the first with a ``thoughtSignature``; ``finishReason: STOP`` and
  ``finishMessage: "Model generated function call(s)."``. A call cut by max tokens is
  not sent (``MAX_TOKENS``); arguments that are no JSON object (knob ``args=``) are
  ``MALFORMED_FUNCTION_CALL`` with ``finishMessage: "Malformed function call: ..."``.
  Faults count argument fragments: a ``drop`` that falls inside the calls' event sends
  that event up to the middle of the arguments, then cuts.
- History: ``functionCall`` parts of a ``model`` turn, and ``functionResponse`` parts
  (each a ``("tool", result)`` turn, ``response.result``/``output``/``error``); a call or
  response without a name is the API's 400.
- ``inlineData`` needs a supported ``mimeType`` and base64 ``data``; ``fileData`` takes
  Files-API and ``gs://`` URIs only (400s in Google's wording, modelled, not captured).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ._behaviour import KNOB_HEADER, Behaviour
from ._content import Offered, Plan, PlannedCall, plan_reply
from ._http import SseStream, serve_stream
from ._state import EmulatorState, Pacer, RecordedRequest

__all__ = ["routes"]

_VERSIONS = frozenset({"v1", "v1beta", "v1alpha"})
_METHODS = frozenset({"streamGenerateContent", "generateContent"})

# Headers the real API sends (adk-go httprr captures).
_COMMON_HEADERS = {
    "Vary": "Origin, X-Origin, Referer",
    "Server": "scaffolding on HTTPServer2",
    "X-XSS-Protection": "0",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
}
_SSE_HEADERS = {
    **_COMMON_HEADERS,
    "Content-Type": "text/event-stream",
    "Content-Disposition": "attachment",
}
_JSON_TYPE = "application/json; charset=UTF-8"

_THOUGHT_SIGNATURE = base64.b64encode(hashlib.sha256(b"rxllm-emulator").digest() * 3).decode()


# JSON the way the Gemini API writes stream events: ``{"a": 1,"b": 2}``, raw UTF-8 (what
# ``json.dumps`` with these options does, without making an encoder per call).
_wire: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False, separators=(",", ": ")).encode


def _event(payload: dict[str, Any]) -> str:
    return "data: " + _wire(payload) + "\r\n\r\n"


def _encode_event(payload: dict[str, Any]) -> bytes:
    return _event(payload).encode()


class _Template:
    """An event's encoding with holes where its text and token counts go.

    A long stream's events differ only there, so each is the template with the values
    spliced in: exactly what encoding the whole event gives, since the same encoder writes
    the text and ``%s`` writes an ``int`` as the encoder does. ``hole`` is the string put
    where the values go; it must occur nowhere else in the event.
    """

    def __init__(self, payload: dict[str, Any], hole: str) -> None:
        pieces = _event(payload).split(_wire(hole))
        self._format = "%s".join(piece.replace("%", "%%") for piece in pieces)

    def fill(self, text: str, *counts: int) -> bytes:
        """The event with ``text`` in the first hole and ``counts`` in the others."""
        return (self._format % (_wire(text), *counts)).encode()


# -- errors -------------------------------------------------------------------------------


def _error_body(code: int, status: str, message: str, details: list[Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return json.dumps({"error": error}, ensure_ascii=False, indent=2).encode() + b"\n"


def _error(code: int, status: str, message: str, details: list[Any] | None = None) -> web.Response:
    return _error_response(code, _error_body(code, status, message, details))


def _error_response(code: int, body: bytes) -> web.Response:
    return web.Response(
        status=code, body=body, headers={**_COMMON_HEADERS, "Content-Type": _JSON_TYPE}
    )


# Pre-encoded bodies of the fixed errors (the real messages, see the module docstring).
_API_KEY_INVALID = _error_body(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
            "locale": "en-US",
            "message": "API key not valid. Please pass a valid API key.",
        },
    ],
)
_NO_KEY = _error_body(
    403,
    "PERMISSION_DENIED",
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API.",
)
_OVERLOADED = _error_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
_INTERNAL_MESSAGE = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
_INTERNAL = _error_body(500, "INTERNAL", _INTERNAL_MESSAGE)
_INVALID_REQUEST = _error_body(
    400,
    "INVALID_ARGUMENT",
    "* GenerateContentRequest.contents[1].parts: contents.parts must not be empty.\n",
)
_ERROR_EVENT = (
    "data: "
    + _wire({"error": {"code": 500, "message": _INTERNAL_MESSAGE, "status": "INTERNAL"}})
    + "\r\n\r\n"
).encode()


def _duration(seconds: float) -> str:
    """A protobuf ``Duration`` in its JSON form: ``"1s"``, ``"0.500s"``."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


def _rate_limited(model: str, retry_after: float) -> web.Response:
    return _error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, head to: "
        "https://ai.google.dev/gemini-api/docs/rate-limits.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/"
                        "generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": _duration(retry_after),
            },
        ],
    )


def _model_not_found(model: str, version: str, method: str) -> web.Response:
    return _error(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version {version}, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def _before_stream_fault(
    behaviour: Behaviour, model: str, version: str, method: str, prompt_tokens: int
) -> web.Response | None:
    fault = behaviour.before_stream_fault
    if fault is None:
        return None
    if fault == "rate_limited":
        return _rate_limited(model, behaviour.retry_after)
    if fault == "overloaded":
        return _error_response(503, _OVERLOADED)
    if fault == "server_error":
        return _error_response(500, _INTERNAL)
    if fault == "invalid_key":
        return _error_response(400, _API_KEY_INVALID)
    if fault == "invalid_request":
        return _error_response(400, _INVALID_REQUEST)
    if fault == "context_too_long":
        return _error(
            400,
            "INVALID_ARGUMENT",
            f"The input token count ({1_048_576 + prompt_tokens}) exceeds the maximum number "
            "of tokens allowed (1048576).",
        )
    return _model_not_found(model, version, method)  # model_not_found


# -- the request --------------------------------------------------------------------------


def _field(obj: dict[str, Any], camel: str) -> Any:
    """A request field by its JSON name or its proto name: Google's parser takes both, and
    google-genai sends some nested fields (``thinkingConfig.include_thoughts``) snake_case."""
    if camel in obj:
        return obj[camel]
    return obj.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_MEDIA_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
        "image/gif",
        "application/pdf",
        "text/plain",
    }
)


def _parts_of(content: Any, where: str) -> list[Any]:
    if not isinstance(content, dict):
        raise _BadRequest(
            f"Invalid value at '{where}' (type.googleapis.com/google.ai."
            "generativelanguage.v1beta.Content)"
        )
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise _BadRequest(
            f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
        )
    return parts


def _text_of(content: Any, where: str) -> str:
    texts: list[str] = []
    for part in _parts_of(content, where):
        if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
    return "".join(texts)


def _check_media(part: dict[str, Any], where: str) -> None:
    """``inlineData`` / ``fileData`` as the API checks them (the messages are Google's
    proto-JSON and validation wording)."""
    inline = _field(part, "inlineData")
    if inline is not None:
        if not isinstance(inline, dict):
            raise _BadRequest(f"Invalid value at '{where}.inline_data'")
        mime = _field(inline, "mimeType")
        if mime not in _MEDIA_TYPES:
            raise _BadRequest(f"Unsupported MIME type: {mime or ''}")
        data = inline.get("data")
        try:
            if not isinstance(data, str) or not data:
                raise ValueError
            base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise _BadRequest(
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding "
                f'failed for "{str(data)[:40]}"'
            ) from None
    files = _field(part, "fileData")
    if files is not None:
        uri = _field(files, "fileUri") if isinstance(files, dict) else None
        if not isinstance(uri, str) or not uri.startswith(
            ("gs://", "https://generativelanguage.googleapis.com/")
        ):
            raise _BadRequest(f"Cannot fetch content from the provided URL: {uri}")


def _result_text(response: Any) -> str:
    """What a ``functionResponse.response`` says: its ``result``/``output``/``error``."""
    if isinstance(response, dict):
        for key in ("result", "output", "error"):
            if key in response:
                value = response[key]
                return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(response, ensure_ascii=False)


def _conversation(body: dict[str, Any]) -> tuple[list[tuple[str, str]], str | None]:
    """``(role, text)`` turns: a ``model`` turn's text (its calls make none), each
    ``functionResponse`` part its own ``("tool", result)`` turn."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _BadRequest("* GenerateContentRequest.contents: contents is not specified\n")
    turns: list[tuple[str, str]] = []
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        parts = _parts_of(content, where)
        role = content.get("role") or "user"
        if role not in ("user", "model"):
            raise _BadRequest("Please use a valid role: user, model.")
        texts: list[str] = []
        results: list[str] = []
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                raise _BadRequest(f"Invalid value at '{where}.parts[{j}]'")
            if isinstance(part.get("text"), str) and not part.get("thought"):
                texts.append(part["text"])
            call = _field(part, "functionCall")
            if call is not None and not (isinstance(call, dict) and call.get("name")):
                raise _BadRequest(
                    f"* GenerateContentRequest.{where}.parts[{j}].function_call.name: "
                    "Name cannot be empty.\n"
                )
            answer = _field(part, "functionResponse")
            if answer is not None:
                if not (isinstance(answer, dict) and answer.get("name")):
                    raise _BadRequest(
                        f"* GenerateContentRequest.{where}.parts[{j}].function_response.name: "
                        "Name cannot be empty.\n"
                    )
                results.append(_result_text(answer.get("response")))
            _check_media(part, f"{where}.parts[{j}]")
        if results:
            turns.extend(("tool", result) for result in results)
        else:
            turns.append(("assistant" if role == "model" else "user", "".join(texts)))
    system = _field(body, "systemInstruction")
    return turns, (_text_of(system, "system_instruction") if system is not None else None)


def _lower_types(schema: Any) -> Any:
    """An OpenAPI ``Schema`` (``"type": "OBJECT"``) as JSON Schema (lower-case types)."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


_EMPTY_OBJECT: Mapping[str, Any] = {"type": "object", "properties": {}}


def _offered(body: dict[str, Any]) -> Offered:
    """Tools (``tools[].functionDeclarations[]``), ``toolConfig.functionCallingConfig`` and
    the response schema (``responseJsonSchema``, else ``responseSchema``)."""
    tools: list[tuple[str, Mapping[str, Any]]] = []
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict):
            raise _BadRequest(f"Invalid value at 'tools[{i}]'")
        for j, declaration in enumerate(_field(tool, "functionDeclarations") or ()):
            name = declaration.get("name") if isinstance(declaration, dict) else None
            if not isinstance(name, str) or not name:
                raise _BadRequest(
                    f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: "
                    "Name cannot be empty.\n"
                )
            schema = _field(declaration, "parametersJsonSchema")
            if schema is None:
                schema = _lower_types(_field(declaration, "parameters"))
            tools.append((name, schema if isinstance(schema, dict) else _EMPTY_OBJECT))
    choice = "auto"
    calling = _field(_field(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = str(_field(calling, "mode") or "AUTO").upper()
    allowed = _field(calling, "allowedFunctionNames") or []
    if mode == "NONE":
        choice = "none"
    elif mode == "ANY":
        choice = "required"
        if allowed:
            tools = [t for t in tools if t[0] in allowed]
            if len(tools) == 1:
                choice = tools[0][0]
    config = _field(body, "generationConfig") or {}
    schema = _field(config, "responseJsonSchema")
    if schema is None and _field(config, "responseSchema") is not None:
        schema = _lower_types(_field(config, "responseSchema"))
    if schema is not None and _field(config, "responseMimeType") != "application/json":
        raise _BadRequest(
            "* GenerateContentRequest.generation_config.response_mime_type: "
            "response_mime_type must be application/json when a response schema is set.\n"
        )
    return Offered(tools=tuple(tools), tool_choice=choice, schema=schema)


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config = _field(body, "generationConfig") or {}
    if not isinstance(config, dict):
        raise _BadRequest("Invalid value at 'generation_config'")
    max_tokens = _field(config, "maxOutputTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise _BadRequest("Invalid value at 'generation_config.max_output_tokens'")
    stops = _field(config, "stopSequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _BadRequest("Invalid value at 'generation_config.stop_sequences'")
    thinking = _field(config, "thinkingConfig") or {}
    if not isinstance(thinking, dict):
        raise _BadRequest("Invalid value at 'generation_config.thinking_config'")
    return {
        "max_tokens": max_tokens,
        "stop": [s for s in stops if s],
        "include_thoughts": bool(_field(thinking, "includeThoughts")),
        "budget": _field(thinking, "thinkingBudget"),
    }


def _cut_at_stop(plan: Plan, stops: list[str]) -> tuple[tuple[str, ...], str]:
    """The reply pieces up to the first stop sequence (excluded) and the finish reason."""
    if plan.tool_calls:
        return plan.text, "MAX_TOKENS" if plan.finish == "length" else "STOP"
    plan, _ = plan.stopped_at(stops)
    return plan.text, "MAX_TOKENS" if plan.finish == "length" else "STOP"


# The finishMessage of a reply that calls (tests/fixtures/gemini/gemini_tool_call.jsonl).
_CALLS_MESSAGE = "Model generated function call(s)."


def _call_args(call: PlannedCall) -> dict[str, Any] | None:
    """A planned call's arguments as the Struct the API sends, ``None`` if not an object."""
    try:
        value = json.loads(call.arguments)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_ids = itertools.count(1)


def _response_id() -> str:
    digest = hashlib.sha256(f"rxllm-gemini-{next(_ids)}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:23]


# -- events -------------------------------------------------------------------------------


class _Reply:
    """One planned reply, as Gemini's stream events (pre-encoded) or one JSON response."""

    def __init__(self, plan: Plan, text: tuple[str, ...], finish: str, show_thoughts: bool):
        self.plan = plan
        self.text = text
        self.finish = finish
        self.show_thoughts = show_thoughts
        self.model = plan.model
        self.response_id = _response_id()
        self.thoughts = plan.reasoning_tokens
        # A call arrives whole, in one part: one cut by max_tokens is not sent at all, and
        # arguments that are no JSON object are the API's MALFORMED_FUNCTION_CALL.
        self.calls = [c for c in plan.tool_calls if "".join(c.pieces) == c.arguments]
        self.finish_message: str | None = None
        self.call_tokens = sum(len(c.pieces) for c in self.calls)
        if self.calls:
            bad = next((c for c in self.calls if _call_args(c) is None), None)
            if bad is not None:
                self.finish = "MALFORMED_FUNCTION_CALL"
                self.finish_message = (
                    f"Malformed function call: print(default_api.{bad.name}({bad.arguments}))"
                )
                self.calls = []
            elif self.finish == "STOP":
                self.finish_message = _CALLS_MESSAGE

    def _call_parts(self) -> list[dict[str, Any]]:
        """The calls' parts as in the capture: ``{functionCall: {name, args}}``, the first
        with the reply's ``thoughtSignature``."""
        parts: list[dict[str, Any]] = []
        for call in self.calls:
            part: dict[str, Any] = {"functionCall": {"name": call.name, "args": _call_args(call)}}
            if not parts:
                part["thoughtSignature"] = _THOUGHT_SIGNATURE
            parts.append(part)
        return parts

    def _usage(self, candidates: int, thoughts: int) -> dict[str, Any]:
        prompt = self.plan.prompt_tokens
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        if candidates:
            usage["candidatesTokenCount"] = candidates
        usage["totalTokenCount"] = prompt + candidates + thoughts
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    def _chunk(
        self, parts: list[dict[str, Any]] | None, finish: str | None, usage: dict[str, Any]
    ) -> dict[str, Any]:
        content: dict[str, Any] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
        if finish == "MALFORMED_FUNCTION_CALL":
            content = {}  # nothing usable came out (as with SAFETY)
        candidate: dict[str, Any] = {"content": content}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        if finish and self.finish_message:
            candidate["finishMessage"] = self.finish_message
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": self.model,
            "responseId": self.response_id,
        }

    def _hole(self) -> str:
        """A string no event holds (a run of private-use characters longer than any in the
        model name, the only text of a template the client chose): a template's hole."""
        return "\ue000" * (self.model.count("\ue000") + 1)

    def events(self) -> list[tuple[int, bytes]]:
        """``(tokens, encoded event)`` for every event; the last one carries finishReason.
        With calls, the text's events are followed by one event holding every call (the
        capture's layout), its tokens the calls' argument fragments."""
        out: list[tuple[int, bytes]] = []
        size = self.plan.behaviour.chunk
        prompt = self.plan.prompt_tokens
        hole = self._hole()
        if self.show_thoughts:
            # Thought events differ only in their text, total and thoughts counts.
            usage = self._usage(0, 1)
            usage["totalTokenCount"] = usage["thoughtsTokenCount"] = hole
            template = _Template(self._chunk([{"text": hole, "thought": True}], None, usage), hole)
            reasoning = self.plan.reasoning
            thoughts = 0
            for start in range(0, len(reasoning), size):
                piece = reasoning[start : start + size]
                thoughts += len(piece)
                event = template.fill("".join(piece), prompt + thoughts, thoughts)
                out.append((len(piece), event))
        thoughts = self.thoughts  # hidden thinking is counted all at once, as the API does
        # Text events but a signed first one and the last differ only in their text,
        # candidates and total counts.
        usage = self._usage(1, thoughts)
        usage["candidatesTokenCount"] = usage["totalTokenCount"] = hole
        template = _Template(self._chunk([{"text": hole}], None, usage), hole)
        signed = self.show_thoughts and bool(self.thoughts)
        candidates = 0
        for start in range(0, len(self.text), size):
            piece = self.text[start : start + size]
            candidates += len(piece)
            last = candidates == len(self.text) and not self.calls
            if last or (start == 0 and signed):
                part: dict[str, Any] = {"text": "".join(piece)}
                if start == 0 and signed:
                    part["thoughtSignature"] = _THOUGHT_SIGNATURE
                finish = self.finish if last else None
                usage = self._usage(candidates, thoughts)
                event = _encode_event(self._chunk([part], finish, usage))
            else:
                total = prompt + candidates + thoughts
                event = template.fill("".join(piece), candidates, total)
            out.append((len(piece), event))
        if self.calls:
            usage = self._usage(candidates + self.call_tokens, thoughts)
            chunk = self._chunk(self._call_parts(), self.finish, usage)
            out.append((self.call_tokens, _encode_event(chunk)))
        elif not self.text:
            out.append((0, _encode_event(self._chunk(None, self.finish, self._usage(0, thoughts)))))
        return out

    def response(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        if self.show_thoughts and self.plan.reasoning:
            parts.append({"text": "".join(self.plan.reasoning), "thought": True})
        if self.text:
            part: dict[str, Any] = {"text": "".join(self.text)}
            if self.show_thoughts and self.thoughts:
                part["thoughtSignature"] = _THOUGHT_SIGNATURE
            parts.append(part)
        parts.extend(self._call_parts())
        usage = self._usage(len(self.text) + self.call_tokens, self.thoughts)
        return self._chunk(parts, self.finish, usage)


# -- handlers -----------------------------------------------------------------------------


def _presented_key(request: web.Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query.get("key")


def routes(state: EmulatorState) -> list[web.RouteDef]:
    async def generate(request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        model, _, method = request.match_info["spec"].rpartition(":")
        if version not in _VERSIONS or not model or method not in _METHODS:
            return _error(404, "NOT_FOUND", f"Method not found: {request.path}")
        stream = method == "streamGenerateContent"
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            body = None
        try:
            record = state.begin(
                dialect="gemini",
                endpoint=method,
                model=model,
                body=body or {},
                api_key=_presented_key(request),
                stream=stream,
                header_knobs=request.headers.get(KNOB_HEADER),
                headers=dict(request.headers),
            )
        except ValueError as error:
            return _error(400, "INVALID_ARGUMENT", str(error))
        try:
            return await _answer(state, record, request, body, version, method)
        except BaseException:
            if record.ended is None:
                state.finish(record, disconnected=True)
            raise

    async def _answer(
        state: EmulatorState,
        record: RecordedRequest,
        request: web.Request,
        body: dict[str, Any] | None,
        version: str,
        method: str,
    ) -> web.StreamResponse:
        def done(response: web.StreamResponse) -> web.StreamResponse:
            state.finish(record, disconnected=False)
            return response

        if record.api_key is None:
            return done(_error_response(403, _NO_KEY))
        if not state.key_ok(record.api_key):
            return done(_error_response(400, _API_KEY_INVALID))
        if body is None:
            return done(
                _error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid JSON payload received. Unexpected token.",
                )
            )
        try:
            conversation, system = _conversation(body)
            config = _generation_config(body)
            offered = _offered(body)
        except _BadRequest as bad:
            return done(_error(400, "INVALID_ARGUMENT", bad.message))
        behaviour = record.behaviour
        want = config["include_thoughts"] or bool(config["budget"] and config["budget"] > 0)
        plan = plan_reply(
            model=record.model,
            conversation=conversation,
            system=system,
            max_tokens=config["max_tokens"],
            want_reasoning=want,
            behaviour=behaviour,
            offered=offered,
        )
        fault = _before_stream_fault(behaviour, record.model, version, method, plan.prompt_tokens)
        if fault is not None:
            return done(fault)
        text, finish = _cut_at_stop(plan, config["stop"])
        show = config["include_thoughts"] or behaviour.reasoning is True
        reply = _Reply(plan, text, finish, show)
        if method == "generateContent":
            return await _unary(state, record, request, reply)
        return await serve_stream(state, record, request, _streamer(reply, behaviour))

    return [
        web.post("/{version}/models/{spec}", generate),
        web.get("/{version}/models", _list_models(state)),
        web.get("/{version}/models/{model}", _get_model(state)),
    ]


# Events per write when nothing paces the stream: one socket write per event would make the
# emulator, not the client under test, the bottleneck.
_BATCH = 64


def _streamer(reply: _Reply, behaviour: Behaviour) -> Callable[[SseStream], Any]:
    async def body(stream: SseStream) -> None:
        events = reply.events()
        pacer = Pacer(behaviour)
        paced = behaviour.tps > 0
        fault = behaviour.mid_stream_fault
        cut: bytes | None = None
        if fault is not None:
            # A mid-stream fault happens after `after` content events, before the final
            # one; the calls' event counts one per argument fragment, and a drop that falls
            # inside it sends that event up to the middle of the arguments.
            events, cut = _cut_events(events, behaviour.after, reply.calls)
        pending: list[bytes] = []

        await stream.start(_SSE_HEADERS)
        first = True
        for tokens, event in events:
            if paced or (first and behaviour.ttft > 0):
                await stream.flush(pending)
                await pacer.before_content(tokens)
            first = False
            pending.append(event)
            if len(pending) >= _BATCH:
                await stream.flush(pending)
        if fault == "drop":
            if cut:
                pending.append(cut)
            await stream.flush(pending)
            stream.drop()
            return
        if fault == "error_event":
            pending.append(_ERROR_EVENT)
        await stream.flush(pending)
        if fault == "stall":
            await stream.stall()
        await stream.finish()

    return body


def _cut_events(
    events: list[tuple[int, bytes]], after: int, calls: list[PlannedCall]
) -> tuple[list[tuple[int, bytes]], bytes | None]:
    """The events sent before a fault after ``after`` content events (never the last), and
    the part of the calls' event sent before a drop that cuts inside its arguments."""
    if not calls:
        return events[: min(after, max(0, len(events) - 1))], None
    text_events = events[:-1]
    if after <= len(text_events):
        return text_events[:after], None
    fragments = after - len(text_events)  # argument fragments sent of the calls' event
    event = events[-1][1]
    start = event.find(b'"args": ') + len(b'"args": ')
    first = calls[0]
    size = len(_wire(_call_args(first)).encode())
    sent = len("".join(first.pieces[:fragments]).encode())
    return text_events, event[: start + max(1, min(size - 1, sent))]


async def _unary(
    state: EmulatorState, record: RecordedRequest, request: web.Request, reply: _Reply
) -> web.StreamResponse:
    behaviour = record.behaviour
    fault = behaviour.mid_stream_fault
    await Pacer(behaviour).before_content(0)
    if fault == "error_event":
        state.finish(record, disconnected=False)
        return _error_response(500, _INTERNAL)
    if fault == "stall":
        # No response at all until the client gives up (aiohttp cancels this handler then).
        stream = SseStream(request, record)
        return await serve_stream(state, record, request, lambda _: stream.stall())
    if fault in ("drop", "truncate"):
        transport = request.transport
        if transport is not None:
            transport.abort()
        state.finish(record, disconnected=False)
        return web.Response(status=500)
    body = json.dumps(reply.response(), ensure_ascii=False, indent=2).encode() + b"\n"
    record.events_sent = 1
    state.finish(record, disconnected=False)
    return web.Response(body=body, headers={**_COMMON_HEADERS, "Content-Type": _JSON_TYPE})


# -- models -------------------------------------------------------------------------------

_FAMILY = {
    "gemini-2.5-pro": ("Gemini 2.5 Pro", 65536),
    "gemini-2.5-flash": ("Gemini 2.5 Flash", 65536),
    "gemini-2.5-flash-lite": ("Gemini 2.5 Flash-Lite", 65536),
}


def _model_entry(model: str) -> dict[str, Any]:
    display, output = _FAMILY.get(model, (model, 65536))
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": display,
        "description": f"{display} (rxllm emulator)",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": output,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


def _known_models() -> list[str]:
    from .. import catalog  # lazily: the catalog may load a data file

    return list(catalog.models("gemini"))


def _pretty(payload: Any, status: int = 200) -> web.Response:
    body = json.dumps(payload, ensure_ascii=False, indent=2).encode() + b"\n"
    return web.Response(
        status=status, body=body, headers={**_COMMON_HEADERS, "Content-Type": _JSON_TYPE}
    )


def _list_models(
    state: EmulatorState,
) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        denied = _key_error(state, request)
        if denied is not None:
            return denied
        return _pretty({"models": [_model_entry(m) for m in _known_models()]})

    return handler


def _get_model(state: EmulatorState) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        denied = _key_error(state, request)
        if denied is not None:
            return denied
        model = request.match_info["model"]
        if model not in _known_models():
            return _error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {request.match_info['version']}.",
            )
        return _pretty(_model_entry(model))

    return handler


def _key_error(state: EmulatorState, request: web.Request) -> web.Response | None:
    key = _presented_key(request)
    if key is None:
        return _error_response(403, _NO_KEY)
    if not state.key_ok(key):
        return _error_response(400, _API_KEY_INVALID)
    return None

"""Google Gemini on the official ``google-genai`` SDK (``genai.Client(...).aio``).

A mapper, nothing more: ``StreamRequest`` → ``generateContent`` request built by the SDK,
each streamed ``GenerateContentResponse`` → ``TokenEvent`` / ``ReasoningEvent`` (parts
with ``thought: true``), then one ``DoneEvent``; SDK and transport errors → ``rxllm.errors``.

What this module does about the SDK's behaviour, and why:

- **Hidden retries are off.** ``HttpRetryOptions(attempts=1)``; setting retry options
  also turns off the SDK's *implicit* retry (a connection dropped before the response
  headers is otherwise retried once after sleeping 1-10 s, whatever the options say).
  Retrying is rxllm's ``retry_on_interrupt``/``retry`` operators' job.
- **Timeout.** The SDK's ``timeout`` (milliseconds) is a deadline for the *whole*
  stream, which would cut a long healthy reply. ``GeminiProvider(timeout=s)`` is instead
  what it is for the other providers: the longest wait for the connection, the response
  headers or the next event (``rxllm.vendors.DEFAULT_TIMEOUT`` unless set). A stream
  silent for longer ends with ``StreamInterruptedError``. Waiting for a free connection
  of the pool (``max_connections``) does not count.
- **Closing.** The SDK closes nothing when its consumer stops iterating; the provider
  closes the HTTP response in ``finally``, so disposing a subscription (which cancels
  the iterating task) closes the socket at once.
- **End of stream.** The API ends a stream at EOF; only a ``finishReason`` (or a
  blocked prompt) says it is complete. EOF without one is ``StreamInterruptedError`` (the
  SDK itself reports success).
- **Hot path.** ``generate_content_stream`` parses every event three times
  (``json.loads``, ``json.dumps``, ``json.loads``) and validates a pydantic
  ``GenerateContentResponse`` per chunk, plus its continuation bookkeeping. The SDK has
  no public raw-stream access (``should_return_http_response`` is refused for streams),
  so by default the provider uses the SDK's internal request pipeline: the SDK builds
  and validates the request (``_GenerateContentParameters_to_mldev``; a text-only
  request's JSON rxllm builds itself, equal to the SDK's), authenticates and
  sends it (``BaseApiClient._build_request`` / ``_async_request_once``, which raise the SDK's
  typed ``ClientError``/``ServerError`` for error statuses); the open response's body
  (``HttpResponse.response_stream``) is framed in bytes per network read by
  :mod:`rxllm.providers._sse` (the SDK's line reader awaits once per line) and each
  event ``json.loads``-ed once; a read's events are handed over together (``_batches``).
  Those are private names: they are checked once at import, and
  if a future SDK lacks them (or with ``GeminiProvider(raw_stream=False)``) the public
  ``generate_content_stream`` is used instead, mapped through the same code. The tests
  run both paths.
- **Usage** is cumulative on every chunk: the last one counts. ``completion_tokens`` =
  ``candidatesTokenCount`` + ``thoughtsTokenCount``; ``reasoning_tokens`` = thoughts;
  ``prompt_tokens`` = ``promptTokenCount`` (+ ``toolUsePromptTokenCount``).

Mapping (request → ``generateContent``):

- **Tools**: ``tools=[{functionDeclarations: [{name, description,
  parametersJsonSchema}]}]``: the JSON Schema goes as it is (``parameters_json_schema``;
  not the OpenAPI-subset ``parameters``), so pydantic schemas with ``$defs`` pass.
  ``tool_choice`` → ``toolConfig.functionCallingConfig.mode``: ``"auto"`` AUTO, ``"none"``
  NONE, ``"required"`` ANY, a tool's name ANY + ``allowedFunctionNames: [name]``.
  Gemini has no switch for parallel calls: ``parallel_tool_calls`` is not sent and
  ``done.details["ignored"]`` says so. The SDK's automatic function calling is off.
- **Tool calls**: a ``functionCall`` part arrives whole (``{name, args, id?}``), so each
  is one ``tool_call_delta`` with the compact JSON of ``args`` and then its ``tool_call``
  at once. ``index`` counts calls in the reply. ``id`` is the API's ``functionCall.id``
  when it sends one, else ``rxllm_<responseId>_<index>`` (stable for a reply; such ids are
  rxllm's own and are *not* sent back to the API). Gemini's ``finishReason`` is ``STOP``
  for a reply that calls (``finishMessage`` "Model generated function call(s).");
  ``done.finish_reason`` is ``tool_calls`` whenever the reply made calls.
  ``MALFORMED_FUNCTION_CALL`` (the model wrote a call the API could not parse; the
  attempt is in ``finishMessage``) raises ``ToolArgumentsError``, naming the tool when the
  message or a single offered tool tells which.
- **Thought signatures**: thinking models put a ``thoughtSignature`` on the first
  ``functionCall`` part of a reply, and Gemini 3 refuses (400) a later request whose
  history lacks it. It travels with the call as ``vendor_data["thought_signature"]``
  (standard base64, as the wire has it) on the ``tool_call`` event and the history's
  ``ToolCall``, so it survives a conversation saved to JSON, and goes back on that
  call's part when the call is sent back in an assistant message.
- **Multi-turn**: an assistant message → a ``model`` turn ``[{text}?, {functionCall:
  {name, args, id?}}...]``; consecutive ``tool`` messages → one ``user`` turn of
  ``functionResponse`` parts ``{name, response: {result: text}}`` (``{error: text}`` when
  ``is_error``), ``name`` from ``Message.name`` or the assistant call with that id.
- **Server-side tools** (Google Search, code execution, URL context) are not offered by
  rxllm (``options={"tools": [...]}`` passes the SDK's own); their results arrive as
  text, ``executableCode`` and ``codeExecutionResult`` parts, which are not mapped.
- **Structured output**: ``generationConfig.responseMimeType: application/json`` +
  ``responseJsonSchema`` (the JSON Schema as it is); the JSON streams as text.
- **Content parts**: image and PDF bytes → ``inlineData {mimeType, data}`` (base64).
  URLs are refused before any request: ``fileData.fileUri`` takes Files-API and
  ``gs://`` URIs (what rxllm does not upload), not an arbitrary ``http(s)`` URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import functools
import inspect
import json
import os
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, ClassVar, TypeVar

import aiohttp
import certifi
import msgspec
import yarl
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from .. import errors
from ..content import DocumentPart, ImagePart, TextPart
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
from ..tools import ToolCall
from ..vendors import vendor
from ._common import ErrorRules, ErrorScope, malformed, retry_after_from_headers, transport_failure
from ._sse import SSEFramer
from ._typed import NULL, TypedError, decode_raw, gemini_chunk

try:  # the SDK's private request pipeline (see the module docstring)
    from google.genai import _common as _genai_common
    from google.genai import _transformers as _genai_transformers
    from google.genai import models as _genai_models
    from google.genai._api_client import BaseApiClient as _BaseApiClient
    from google.genai._api_client import HttpResponse as _HttpResponse

    _RAW_STREAM_AVAILABLE = all(
        (
            hasattr(_genai_models, "_GenerateContentParameters_to_mldev"),
            hasattr(types, "_GenerateContentParameters"),
            hasattr(_genai_common, "convert_to_dict"),
            hasattr(_genai_common, "encode_unserializable_types"),
            hasattr(_genai_transformers, "t_model"),
            hasattr(_BaseApiClient, "_build_request"),
            hasattr(_BaseApiClient, "_async_request_once"),
        )
    )
    _RAW_STREAM_AVAILABLE = _RAW_STREAM_AVAILABLE and "implicit_retry" in (
        inspect.signature(_BaseApiClient._async_request_once).parameters
    )
except ImportError:  # pragma: no cover - depends on the SDK version
    _RAW_STREAM_AVAILABLE = False

__all__ = ["GeminiProvider"]

_API_VERSION = "v1beta"
_API_URL = "https://generativelanguage.googleapis.com/"  # google-genai's default

# Thinking budgets (tokens) by effort; True leaves the budget to the model ("dynamic").
_THINKING_BUDGET = {"low": 1024, "medium": 8192, "high": 24576}

_FINISH = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "IMAGE_RECITATION": FinishReason.CONTENT_FILTER,
    "LANGUAGE": FinishReason.CONTENT_FILTER,
    "MALFORMED_FUNCTION_CALL": FinishReason.ERROR,
    "UNEXPECTED_TOOL_CALL": FinishReason.ERROR,
    "TOO_MANY_TOOL_CALLS": FinishReason.ERROR,
    "NO_IMAGE": FinishReason.ERROR,
}


def _api_error(error: genai_errors.APIError, scope: ErrorScope) -> errors.ProviderError:
    """A status (or an in-band ``{"error": ...}`` event, raised the SDK's way)."""
    body = error.details if isinstance(error.details, dict) else {}
    inner = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    details = [d for d in inner.get("details") or () if isinstance(d, dict)]
    status = error.status or inner.get("status")
    code = error.code if isinstance(error.code, int) else 500
    message = f"{status}: {error.message}" if status else str(error.message)
    retry_after = _retry_delay(details)
    if retry_after is None:
        headers = getattr(error.response, "headers", None)
        retry_after = retry_after_from_headers(dict(headers) if headers else None)
    reasons = {d.get("reason") for d in details}
    if code == 401 or status == "UNAUTHENTICATED" or "API_KEY_INVALID" in reasons:
        return errors.AuthenticationError(
            scope.scrub(message) + " (check GEMINI_API_KEY or pass api_key=)",
            provider=scope.provider,
            model=scope.model,
            status=code,
            retry_after=retry_after,
        )
    if code < 400:  # an in-band error without a usable code
        code = 500
    return scope.status_error(code, message, retry_after=retry_after)


# The SDK's and aiohttp's exceptions → rxllm's (then the rules every vendor shares, in
# ``_common``: the builtin TimeoutError of the per-read deadline is a read timeout there).
_ERRORS = ErrorRules(
    "Gemini",
    [
        (genai_errors.APIError, _api_error),
        (genai_errors.UnknownApiResponseError, malformed),
        (aiohttp.ClientError, transport_failure),
    ],
    connect_errors=(aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError),
)


class GeminiProvider(Provider[genai.Client]):
    """Google Gemini (``gemini``, alias ``google``) through ``google-genai``.

    Example:
        >>> gemini = rxllm.provider("gemini")  # GEMINI_API_KEY or GOOGLE_API_KEY
        >>> await gemini.generate("Say hi", max_tokens=50)

    Options: ``raw_stream=False`` parses chunks with the SDK's public
    ``generate_content_stream`` (pydantic per chunk) instead of its raw pipeline.
    """

    spec = vendor("gemini")
    prices_done: ClassVar[bool] = True
    content_parts: ClassVar[frozenset[str]] = frozenset({"image", "document"})

    @property
    def raw_stream(self) -> bool:
        """Whether chunks skip the SDK's pydantic parsing (see the module docstring)."""
        return _RAW_STREAM_AVAILABLE and bool(self.options.get("raw_stream", True))

    # -- the SDK client -----------------------------------------------------------------

    def _make_client(self) -> genai.Client:
        # Our own aiohttp session: the SDK would otherwise build a ClientSession subclass
        # (deprecated by aiohttp, with a warning) that we could not close per loop.
        # A pool of max_connections: more requests queue in aiohttp for a free connection,
        # and the trace pauses their read deadline meanwhile (a wait for a slot is no read).
        # The proxy from the environment (HTTPS_PROXY, NO_PROXY...), looked up once here:
        # trust_env=True would look it up (and read ~/.netrc) on two threads per request,
        # ~0.6 ms of CPU a request, half of a short request's cost.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections),
            trace_configs=[_pool_wait_trace()],
            **_env_proxy(self.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or _API_URL),
        )
        # One TLS context for every client: the SDK otherwise loads the CA bundle into three
        # new ones per client (~0.15-0.4 s, paid before the first request of each loop).
        tls = _tls_context()
        options = types.HttpOptions(
            api_version=_API_VERSION,
            retry_options=types.HttpRetryOptions(attempts=1),
            aiohttp_client=session,
            client_args={"verify": tls},
            async_client_args={"verify": tls, "ssl": tls},
        )
        if self.base_url:
            options.base_url = self.base_url
        return genai.Client(
            api_key=self.api_key.get_secret_value(), vertexai=False, http_options=options
        )

    async def _close_client(self, client: genai.Client) -> None:
        # Provider.aclose() has stopped this client's streams first, and it must: closing
        # an aiohttp session under a response being read drops the response's reader
        # without waking it (ResponseHandler.close() forgets the payload before
        # connection_lost could fail it), so that read would wait forever; and a request
        # being sent meets a bare AssertionError or "Session is closed" RuntimeError.
        await client.aio.aclose()
        session = client._api_client._http_options.aiohttp_client
        if session is not None:
            await session.close()

    # -- request ------------------------------------------------------------------------

    def _config(self, request: StreamRequest) -> types.GenerateContentConfig:
        fields: dict[str, Any] = {}
        system = request.system_prompt()
        if system:
            fields["system_instruction"] = system
        if request.temperature is not None:
            fields["temperature"] = request.temperature
        max_tokens = self.max_tokens(request)
        if max_tokens is not None:
            fields["max_output_tokens"] = max_tokens
        if request.stop:
            fields["stop_sequences"] = list(request.stop)
        if request.reasoning:
            budget = None if request.reasoning is True else _THINKING_BUDGET[request.reasoning]
            fields["thinking_config"] = types.ThinkingConfig(
                include_thoughts=True, thinking_budget=budget
            )
        if request.tools:
            fields["tools"] = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=tool.name,
                            description=tool.description or None,
                            parameters_json_schema=dict(tool.parameters),
                        )
                        for tool in request.tools
                    ]
                )
            ]
            # Declarations only: nothing for the SDK to run, and it must never try.
            fields["automatic_function_calling"] = types.AutomaticFunctionCallingConfig(
                disable=True
            )
        if request.tool_choice is not None:
            fields["tool_config"] = types.ToolConfig(
                function_calling_config=_calling_config(request.tool_choice)
            )
        if request.response_format is not None:
            fields["response_mime_type"] = "application/json"
            fields["response_json_schema"] = dict(request.response_format.schema)
        fields.update(request.options)
        try:
            return types.GenerateContentConfig(**fields)
        except ValueError as error:
            raise errors.InvalidRequestError(
                f"bad Gemini request options: {error}", provider=self.name, model=request.model
            ) from error

    def _contents(self, request: StreamRequest) -> list[types.Content]:
        contents: list[types.Content] = []
        names: dict[str, str] = {}  # call id → tool name, from the assistant turns so far
        for message in request.conversation():
            if message.role == "tool":
                part = _function_response(message, names, self.name, request.model)
                last = contents[-1] if contents else None
                if last is not None and last.parts and last.parts[-1].function_response:
                    last.parts.append(part)  # consecutive results: one turn
                else:
                    contents.append(types.Content(role="user", parts=[part]))
            elif message.role == "assistant":
                parts = [types.Part(text=message.text)] if message.text else []
                for call in message.tool_calls:
                    names[call.id] = call.name
                    parts.append(_function_call_part(call))
                contents.append(types.Content(role="model", parts=parts))
            else:
                contents.append(types.Content(role="user", parts=_user_parts(message)))
        return contents

    # -- streaming ----------------------------------------------------------------------

    async def _batches(self, request: StreamRequest) -> AsyncIterator[list[StreamEvent]]:
        client = self.client()
        # A text-only request is sent as the JSON the SDK would make of it, built here (the
        # SDK's validation and conversion cost ~1 ms a request); any other through the SDK.
        plain = _plain_body(request, self.max_tokens(request)) if self.raw_stream else None
        if plain is None:
            config = self._config(request)
            contents = self._contents(request)
        timeout = self.timeout
        loop = asyncio.get_running_loop()
        raw: _HttpResponse | None = None
        lines: Any = None
        finish: str | None = None
        blocked: str | None = None
        usage: Mapping[str, Any] | None = None
        usage_raw: msgspec.Raw | None = None
        model_version: str | None = None
        response_id: str | None = None
        finish_message: str | None = None
        calls = 0
        with _ERRORS.scope(
            provider=self.name,
            model=request.model,
            secret=self.api_key.get_secret_value(),
            timeout=timeout,
        ) as scope:
            try:
                # One deadline, moved before every read: the connection and the headers,
                # then each event. It waits while the consumer holds an event, and while
                # the request queues for a connection (see _pool_wait_trace).
                async with asyncio.timeout(timeout) as deadline:
                    if self.raw_stream:
                        if plain is not None:
                            http_request = _plain_request(client, request.model, plain)
                        else:
                            http_request = _raw_request(client, request.model, contents, config)
                        raw = await _unqueued(_send_raw(client, http_request), deadline, timeout)
                        lines = _body_reads(raw)
                        scope.reading = True
                        scope.expect_event_stream(_content_type(raw.headers))
                    else:
                        lines = _public_stream(client, request.model, contents, config, scope)
                    framer = SSEFramer()
                    loads = json.loads
                    while True:
                        deadline.reschedule(loop.time() + timeout)
                        try:
                            # The public stream sends the request on its first step.
                            read = await (
                                lines.__anext__()
                                if raw is not None
                                else _unqueued(lines.__anext__(), deadline, timeout)
                            )
                        except StopAsyncIteration:
                            break
                        deadline.reschedule(None)  # a slow consumer is not a stalled server
                        batch: list[StreamEvent] = []  # this read's events
                        add = batch.append
                        try:
                            # Raw: every event this network read completed, framed in bytes.
                            for line in framer.feed_data(read) if raw is not None else (read,):
                                if raw is not None:
                                    try:  # a text-only event, typed (see _typed)
                                        typed = gemini_chunk(line)
                                    except TypedError:
                                        typed = None
                                    if typed is not None:
                                        if response_id is None:
                                            response_id = typed.responseId
                                            model_version = typed.modelVersion
                                        content_typed = typed.candidates[0].content
                                        if content_typed is not None:
                                            for piece in content_typed.parts:
                                                if piece.text:
                                                    if piece.thought:
                                                        add(ReasoningEvent(piece.text))
                                                    else:
                                                        add(TokenEvent(piece.text))
                                        if typed.usageMetadata != NULL:
                                            usage_raw = typed.usageMetadata
                                            usage = None
                                        continue
                                data: dict[str, Any] = loads(line) if raw is not None else read
                                if "error" in data:
                                    _raise_in_band(data, raw)
                                if response_id is None:
                                    response_id = data.get("responseId")
                                    model_version = data.get("modelVersion")
                                candidates = data.get("candidates")
                                if candidates:
                                    candidate = candidates[0]
                                    content = candidate.get("content")
                                    if content:
                                        for part in content.get("parts") or ():
                                            text = part.get("text")
                                            if text:
                                                if part.get("thought"):
                                                    add(ReasoningEvent(text))
                                                else:
                                                    add(TokenEvent(text))
                                            elif "functionCall" in part:
                                                batch.extend(_call_events(part, calls, response_id))
                                                calls += 1
                                    if "finishReason" in candidate:
                                        finish = candidate["finishReason"]
                                        finish_message = candidate.get("finishMessage")
                                elif "promptFeedback" in data:
                                    blocked = data["promptFeedback"].get("blockReason") or blocked
                                if "usageMetadata" in data:
                                    usage = data["usageMetadata"]
                                    usage_raw = None
                        except Exception:
                            if batch:  # what the read brought before the error is delivered
                                yield batch
                            raise
                        if batch:
                            yield batch
            finally:
                await _close(lines, raw)
            if usage_raw is not None:  # the last usage came with a typed event
                usage = decode_raw(usage_raw)  # type: ignore[assignment]
            if finish is None and blocked is None:
                raise scope.incomplete("a finishReason (cut before its end)")
            if finish == "MALFORMED_FUNCTION_CALL" and request.tools:
                raise _malformed_call(finish_message, request, self.name)
            # In the scope: the finish reason and usage came from the wire.
            details: dict[str, Any] = {"finish_reason": finish or blocked}
            if blocked is not None:
                details["block_reason"] = blocked
            if response_id:
                details["response_id"] = response_id
            if finish_message and calls:
                details["finish_message"] = finish_message
            if request.parallel_tool_calls is not None:
                details["ignored"] = ("parallel_tool_calls",)
            if calls and finish == "STOP":
                reason = FinishReason.TOOL_CALLS  # Gemini says STOP for a reply that calls
            elif finish:
                reason = _FINISH.get(finish, FinishReason.STOP)
            else:
                reason = FinishReason.CONTENT_FILTER
            done = DoneEvent(
                usage=_usage(usage),
                finish_reason=reason,
                model=model_version or request.model,
                provider=self.name,
                details=details,
            )
            yield [self._priced(done, request)]


# -- tools, content parts ----------------------------------------------------------------

# Ids rxllm makes for calls the API sent without one: never sent back (see the docstring).
_LOCAL_ID = "rxllm_"
_MALFORMED_NAME = re.compile(r"\b(?:default_api\.)?([A-Za-z_][A-Za-z0-9_.:-]*)\s*\(")


def _calling_config(choice: str) -> types.FunctionCallingConfig:
    if choice == "auto":
        return types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.AUTO)
    if choice == "none":
        return types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.NONE)
    if choice == "required":
        return types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
    return types.FunctionCallingConfig(
        mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=[choice]
    )


def _call_events(
    part: Mapping[str, Any], index: int, response_id: str | None
) -> tuple[ToolCallDeltaEvent, ToolCallEvent]:
    """A whole ``functionCall`` part: its one delta and, at once, the complete call."""
    call = part["functionCall"]
    name = call.get("name") or "?"
    args = call.get("args") or {}
    call_id = call.get("id") or f"{_LOCAL_ID}{response_id or 'response'}_{index}"
    signature = part.get("thoughtSignature")
    # The public SDK path serializes bytes as URL-safe base64; keep the wire's alphabet.
    kept = {"thought_signature": signature.replace("-", "+").replace("_", "/")} if signature else {}
    text = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    return (
        ToolCallDeltaEvent(index=index, arguments=text, id=call_id, name=name),
        ToolCallEvent(id=call_id, name=name, arguments=args, index=index, vendor_data=kept),
    )


def _function_call_part(tool_call: ToolCall) -> types.Part:
    """A call of an assistant turn, with its thought signature when it came with one."""
    call_id = tool_call.id
    call = types.FunctionCall(
        name=tool_call.name,
        args=dict(tool_call.arguments),
        id=None if call_id.startswith(_LOCAL_ID) else call_id,
    )
    signature = tool_call.vendor_data.get("thought_signature")
    if not isinstance(signature, str):
        return types.Part(function_call=call)
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return types.Part(function_call=call)
    return types.Part(function_call=call, thought_signature=raw)


def _function_response(
    message: Message, names: Mapping[str, str], provider: str, model: str
) -> types.Part:
    call_id = message.tool_call_id or ""
    name = message.name or names.get(call_id)
    if not name:
        raise errors.InvalidRequestError(
            f"Gemini needs the tool's name with its result (call {call_id!r}): give "
            "Message.tool_result(..., name=) or send the assistant message that made the call",
            provider=provider,
            model=model,
        )
    key = "error" if message.is_error else "result"
    return types.Part(
        function_response=types.FunctionResponse(
            name=name,
            response={key: message.text},
            id=None if call_id.startswith(_LOCAL_ID) else call_id,
        )
    )


def _user_parts(message: Message) -> list[types.Part]:
    if isinstance(message.content, str):
        return [types.Part(text=message.content)]
    parts: list[types.Part] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                parts.append(types.Part(text=part.text))
        elif isinstance(part, ImagePart | DocumentPart) and part.data is not None:
            media_type = part.media_type or (
                "application/pdf" if isinstance(part, DocumentPart) else None
            )
            parts.append(types.Part(inline_data=types.Blob(data=part.data, mime_type=media_type)))
    return parts


def _malformed_call(
    message: str | None, request: StreamRequest, provider: str
) -> errors.ToolArgumentsError:
    """``MALFORMED_FUNCTION_CALL``: the model wrote a call the API could not parse
    (``finishMessage``: "Malformed function call: print(default_api.f(...))")."""
    text = message or ""
    attempt = text.split(":", 1)[1].strip() if ":" in text else text
    offered = {tool.name for tool in request.tools}
    named = [m for m in _MALFORMED_NAME.findall(attempt) if m.split(".")[-1] in offered]
    if named:
        name = named[0].split(".")[-1]
    elif len(offered) == 1:
        name = next(iter(offered))
    else:
        name = "?"
    return errors.ToolArgumentsError(
        f"Gemini could not parse the model's call of tool {name!r} "
        f"(MALFORMED_FUNCTION_CALL): {attempt!r:.200}",
        tool_name=name,
        arguments=attempt,
        provider=provider,
        model=request.model,
    )


# -- helpers ------------------------------------------------------------------------------

_T = TypeVar("_T")

# The read deadline of the request being sent in this task, and its limit in seconds.
_sending: contextvars.ContextVar[tuple[asyncio.Timeout, float] | None] = contextvars.ContextVar(
    "rxllm_gemini_sending", default=None
)


async def _unqueued(step: Awaitable[_T], deadline: asyncio.Timeout, limit: float) -> _T:
    """Await ``step`` (which may send the request) with its read deadline paused while
    aiohttp queues it for a connection (the trace below reads the deadline from here)."""
    sending = _sending.set((deadline, limit))
    try:
        return await step
    finally:
        _sending.reset(sending)


async def _queued(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    sending = _sending.get()
    if sending is not None:
        sending[0].reschedule(None)


async def _dequeued(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    sending = _sending.get()
    if sending is not None:
        deadline, limit = sending
        deadline.reschedule(asyncio.get_running_loop().time() + limit)


def _pool_wait_trace() -> aiohttp.TraceConfig:
    """Waiting for a free connection of the pool (``max_connections``) is not a read:
    the per-read deadline stops while aiohttp holds the request in its queue and starts
    afresh when a connection is free. A queued stream has not failed; bound the wait
    with ``timeout(first_token=)`` or ``timeout(total=)`` if it must be."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_queued_start.append(_queued)
    trace.on_connection_queued_end.append(_dequeued)
    return trace


def _env_proxy(url: str) -> dict[str, Any]:
    """The ``proxy``/``proxy_auth`` of a session for ``url``, from the environment as
    aiohttp's ``trust_env`` reads it (``*_PROXY``, ``NO_PROXY``); nothing when none applies."""
    try:
        proxy, auth = aiohttp.helpers.get_env_proxy_for_url(yarl.URL(url))
    except LookupError:
        return {}
    return {"proxy": proxy, "proxy_auth": auth}


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context google-genai would make (CA bundle from certifi or SSL_CERT_*)."""
    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()),
        capath=os.environ.get("SSL_CERT_DIR"),
    )


def _raw_request(
    client: genai.Client,
    model: str,
    contents: list[types.Content],
    config: types.GenerateContentConfig,
) -> Any:
    """The SDK's ``HttpRequest`` for ``streamGenerateContent``, as
    ``AsyncModels._generate_content_stream`` builds it: validated, converted, with the
    key header. Raises ``ValueError`` for a request the SDK refuses."""
    api = client._api_client
    params = types._GenerateContentParameters(model=model, contents=contents, config=config)
    body = _genai_models._GenerateContentParameters_to_mldev(api, params, None, params)
    path = f"{body['_url']['model']}:streamGenerateContent?alt=sse"
    body.pop("config", None)
    body = _genai_common.encode_unserializable_types(_genai_common.convert_to_dict(body))
    # Per-request http_options (extra headers, say) apply as they do in the public path.
    http_request = api._build_request("post", path, body, config.http_options)
    http_request.timeout = None  # the provider applies its own per-read timeout
    return http_request


def _plain_body(request: StreamRequest, max_tokens: int | None) -> dict[str, Any] | None:
    """The API's JSON for a text-only request (no tools, schema, media or options), exactly
    as the SDK's conversion makes it (``tests/providers/test_gemini.py`` compares the two);
    ``None`` for any other request, which goes through the SDK's conversion."""
    if (
        request.tools
        or request.tool_choice is not None
        or request.response_format is not None
        or request.options
    ):
        return None
    contents: list[dict[str, Any]] = []
    for message in request.conversation():
        content = message.content
        if (
            message.role not in ("user", "assistant")
            or message.tool_calls
            or not isinstance(content, str)
            or not content
        ):
            return None
        role = "user" if message.role == "user" else "model"
        contents.append({"parts": [{"text": content}], "role": role})
    body: dict[str, Any] = {"contents": contents}
    system = request.system_prompt()
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}], "role": "user"}
    generation: dict[str, Any] = {}
    if request.temperature is not None:
        generation["temperature"] = request.temperature
    if max_tokens is not None:
        generation["maxOutputTokens"] = max_tokens
    if request.stop:
        generation["stopSequences"] = list(request.stop)
    if request.reasoning:
        thinking: dict[str, Any] = {"include_thoughts": True}
        if request.reasoning is not True:
            thinking["thinking_budget"] = _THINKING_BUDGET[request.reasoning]
        generation["thinkingConfig"] = thinking
    body["generationConfig"] = generation
    return body


def _plain_request(client: genai.Client, model: str, body: dict[str, Any]) -> Any:
    """The SDK's ``HttpRequest`` for ``streamGenerateContent`` with ``body`` (see
    :func:`_raw_request`). Raises ``ValueError`` for a model name the SDK refuses."""
    api = client._api_client
    path = f"{_genai_transformers.t_model(api, model)}:streamGenerateContent?alt=sse"
    http_request = api._build_request("post", path, body, None)
    http_request.timeout = None  # the provider applies its own per-read timeout
    return http_request


async def _send_raw(client: genai.Client, http_request: Any) -> _HttpResponse:
    """Send it through the SDK, once: the SDK raises its typed ``ClientError`` /
    ``ServerError`` for an error status and returns the open response. Its
    ``_async_request`` is this in a tenacity retry loop of one attempt (retries are
    rxllm's, not hidden in the SDK), ~0.13 ms a request for nothing."""
    response: _HttpResponse = await client._api_client._async_request_once(
        http_request, stream=True, implicit_retry=False
    )
    return response


async def _public_stream(
    client: genai.Client,
    model: str,
    contents: list[types.Content],
    config: types.GenerateContentConfig,
    scope: ErrorScope,
) -> AsyncIterator[dict[str, Any]]:
    """The public SDK stream, each chunk as the API's JSON (camelCase) dict."""
    stream = await client.aio.models.generate_content_stream(
        model=model, contents=contents, config=config
    )
    try:
        async for chunk in stream:
            scope.reading = True  # the SDK sends the request on the first iteration
            yield chunk.model_dump(mode="json", by_alias=True, exclude_none=True)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def _body_reads(raw: _HttpResponse) -> AsyncIterator[bytes]:
    """The body of the SDK's open response, read by read (framed by ``_sse``, not the
    SDK's line reader, which awaits once per line)."""
    response: Any = raw.response_stream
    if isinstance(response, aiohttp.ClientResponse):
        reads: AsyncIterator[bytes] = response.content.iter_any()
        return reads
    return response.aiter_bytes()  # type: ignore[no-any-return]  # httpx2 transport


def _content_type(headers: Any) -> str | None:
    """The response's content type, from the SDK's headers (a dict, of any key case)."""
    for key, value in dict(headers or {}).items():
        if str(key).lower() == "content-type":
            return str(value)
    return None


def _raise_in_band(data: dict[str, Any], raw: _HttpResponse | None) -> None:
    """An ``{"error": ...}`` event: raise it as the SDK does (ClientError / ServerError)."""
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    genai_errors.APIError.raise_error(code if isinstance(code, int) else 500, data, raw)


async def _close(lines: Any, raw: _HttpResponse | None) -> None:
    """Close the SDK's line iterator and the HTTP response under it (the socket too)."""
    response = getattr(raw, "response_stream", None)
    if isinstance(response, aiohttp.ClientResponse):
        # close(), not release(): an unfinished response must not go back to the pool.
        response.close()
    # Closing must not mask the stream's own outcome.
    with contextlib.suppress(Exception):
        if lines is not None:
            await lines.aclose()
        if response is not None and not isinstance(response, aiohttp.ClientResponse):
            await response.aclose()  # httpx2, when a custom transport is configured


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "26s"``)."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(0.0, float(delay[:-1]))
                except ValueError:
                    return None
    return None


def _usage(usage: Mapping[str, Any] | None) -> Usage:
    if not usage:
        return Usage()
    thoughts = int(usage.get("thoughtsTokenCount") or 0)
    candidates = int(usage.get("candidatesTokenCount") or 0)
    prompt = int(usage.get("promptTokenCount") or 0) + int(
        usage.get("toolUsePromptTokenCount") or 0
    )
    return Usage(
        prompt_tokens=prompt, completion_tokens=candidates + thoughts, reasoning_tokens=thoughts
    )

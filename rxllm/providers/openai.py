"""OpenAI Chat Completions on the official ``openai`` SDK (``openai.AsyncOpenAI``).

The SDK builds the request, authenticates, and raises its typed status errors;
the stream itself is read through ``with_streaming_response``, framed in bytes
per network read by :mod:`rxllm.providers._sse`; a plain text chunk is decoded typed
(:mod:`rxllm.providers._typed`), every other one with ``json.loads``. Iterating the SDK's
``AsyncStream`` would build a pydantic model per chunk, which costs about ten
times the rest of the hot path; rxllm never needs those models.
The events of one read are handed over together (``_batches``), so what consumes
them pays its await per read, not per event.

Mapping:

- request: the system prompt becomes a leading ``system`` message;
  ``max_tokens`` → ``max_completion_tokens`` (reasoning models reject
  ``max_tokens``); ``reasoning`` → ``reasoning_effort`` (``True`` → ``"medium"``);
  ``stream_options.include_usage`` is always on, so usage arrives on the last,
  empty-choices chunk. ``request.options`` pass through to the SDK call (and
  override what rxllm built, e.g. a ``response_format`` with ``strict: true``).
- tools: ``tools=[{"type": "function", "function": {name, description,
  parameters}}]``; ``tool_choice`` ``"auto"``/``"none"``/``"required"`` as is, a
  tool's name as ``{"type": "function", "function": {"name": ...}}``;
  ``parallel_tool_calls`` as is. None of them is sent without tools (the API
  answers 400: they are "only allowed when 'tools' are specified"; without tools
  no call can happen anyway). Chat Completions has no tools the vendor runs
  itself, so no ``server_side`` calls come from it (a server-side call kept in
  history from another vendor is left out of the assistant turn).
- history: an assistant turn with calls → ``{"role": "assistant", "content":
  text or null, "tool_calls": [{"id", "type": "function", "function": {"name",
  "arguments": <JSON text>}}]}``; each tool result → its own ``{"role": "tool",
  "tool_call_id", "content"}`` message (Chat Completions has no error flag: an
  ``is_error`` result is sent as ``"Error: <content>"``).
- content parts (user turns): ``[{"type": "text", "text"}, {"type": "image_url",
  "image_url": {"url": <data URL or https URL>}}, {"type": "file", "file":
  {"filename", "file_data": <PDF data URL>}}]``. Chat Completions cannot fetch a
  document by URL, so ``document_url`` is refused before the network.
  OpenAI-compatible servers behind ``base_url`` take what their model takes
  (many take no ``file`` part, some no images): their 400 says so.
- structured output: ``response_format={"type": "json_schema", "json_schema":
  {"name", "schema", "strict": false}}``; the JSON reply streams as ordinary
  content → ``TokenEvent``. ``strict`` is false on purpose: strict mode demands
  ``additionalProperties: false`` on every object and every property in
  ``required``, which pydantic's schemas (defaults, optional fields) generally
  do not satisfy, and the API rejects such a schema with a 400 before
  answering. Non-strict, the model still follows the schema, and rxllm validates
  the reply itself (:mod:`rxllm.structured`); pass ``options={"response_format":
  ...}`` with ``"strict": true`` for a schema written for strict mode.
- chunks: ``delta.content`` → ``TokenEvent``; ``delta.refusal`` → ``TokenEvent``
  with finish reason ``content_filter``; ``delta.reasoning_content`` /
  ``delta.reasoning`` (sent by OpenAI-compatible servers behind ``base_url``;
  OpenAI itself never streams reasoning text in Chat Completions) →
  ``ReasoningEvent``; ``delta.tool_calls`` (``{index, id, type, function: {name,
  arguments: ""}}`` to start a call, then ``{index, function: {arguments}}``
  fragments) → ``ToolCallDeltaEvent`` (id and name on the first fragment); a call
  is complete when the next one starts or the stream ends (the generic layer
  sends its ``ToolCallEvent``). Compatible servers that send a whole call in one
  fragment, repeat the id on every fragment or leave ``index`` out are read the
  same way. ``finish_reason: "tool_calls"`` → ``FinishReason.TOOL_CALLS``. The
  ``tool_calls`` key is only looked at in deltas that are not plain text.
- end: ``[DONE]`` after a ``finish_reason`` chunk is the only clean end; a
  stream without them raises :class:`rxllm.errors.StreamInterruptedError` (the SDK
  itself would report success). The ``done`` event's ``details`` carry the raw
  ``finish_reason``, the completion ``id`` and ``cached_tokens``.
- errors: the SDK's status errors and the in-band ``data: {"error": ...}``
  frame map to the ``rxllm.errors`` tree with ``retry_after`` from
  ``retry-after-ms`` / ``retry-after``; connection failures, raw ``httpx2``
  exceptions while reading and malformed chunks follow the rule book shared by
  every provider (``ConnectionFailedError``, ``StreamInterruptedError``).

The SDK's hidden retries are off (``max_retries=0``): retrying is the job of
rxllm's ``retry_on_interrupt`` operator, where it is visible and composable.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx2
import openai

from .. import errors
from ..content import DocumentPart, ImagePart, Part, TextPart
from ..events import (
    DoneEvent,
    FinishReason,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    ToolCallDeltaEvent,
    Usage,
)
from ..provider import Provider
from ..request import Message, StreamRequest
from ..vendors import vendor
from ._common import ErrorRules, ErrorScope, retry_after_from_headers, transport_failure
from ._post import StreamingPost, body_reads, drain
from ._sse import SSEFramer
from ._typed import TypedError, openai_text_chunk

__all__ = ["OpenAIProvider"]

_FINISH: dict[str, FinishReason] = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
}

# The in-band error frame has no HTTP status of its own (it travels in a 200): the status its
# type would have had decides the rxllm class.
_INBAND_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_exceeded": 429,
    "tokens": 429,
    "requests": 429,
    "insufficient_quota": 429,
    "overloaded": 503,
    "overloaded_error": 503,
    "server_error": 500,
}

# How a request is sent: the SDK's ``post`` (see _post), with what ``create`` adds.
_POST = StreamingPost(
    openai.resources.chat.AsyncCompletions.create,
    "/chat/completions",
    options={"security": {"bearer_auth": True}},
)

_CLIENT_OPTIONS = ("organization", "project", "default_headers", "default_query")


def _status_error(error: openai.APIStatusError, scope: ErrorScope) -> errors.ProviderError:
    body = error.body
    message = body.get("message") if isinstance(body, dict) else None
    text = message if isinstance(message, str) and message else error.message
    if error.code == "context_length_exceeded":
        return errors.ContextTooLongError(
            scope.scrub(text), provider=scope.provider, model=scope.model, status=error.status_code
        )
    return scope.status_error(
        error.status_code, text, retry_after=retry_after_from_headers(error.response.headers)
    )


def _in_band_error(
    body: object, scope: ErrorScope, *, fallback: str = "error in the stream"
) -> errors.ProviderError:
    """The rxllm error for a ``data: {"error": {...}}`` frame inside a 200 stream."""
    fields = body if isinstance(body, dict) else {}
    message = fields.get("message")
    text = message if isinstance(message, str) and message else fallback
    code, kind = fields.get("code"), fields.get("type")
    if code == "context_length_exceeded":
        return errors.ContextTooLongError(
            scope.scrub(text), provider=scope.provider, model=scope.model, status=400
        )
    return scope.status_error(
        _INBAND_STATUS.get(str(code), _INBAND_STATUS.get(str(kind), 500)), text
    )


def _sdk_error(error: openai.APIError, scope: ErrorScope) -> errors.ProviderError:
    # An APIError that is neither a status nor a connection error: the SDK's own
    # reading of an in-band error.
    return _in_band_error(error.body, scope, fallback=error.message)


# The SDK's exceptions → rxllm's (then the rules every vendor shares, in ``_common``).
_ERRORS = ErrorRules(
    "OpenAI",
    [
        (openai.APIStatusError, _status_error),
        # Connect failures, timeouts (APITimeoutError) and resets, told apart by their cause.
        (openai.APIConnectionError, transport_failure),
        (openai.APIError, _sdk_error),
        (openai.OpenAIError, errors.ProviderError),
    ],
    timeout_errors=(openai.APITimeoutError,),
)


class OpenAIProvider(Provider[openai.AsyncOpenAI]):
    """OpenAI Chat Completions, streamed.

    Example:
        >>> provider = rxllm.provider("openai")  # reads OPENAI_API_KEY (and OPENAI_BASE_URL)
        >>> text = await provider.generate("Write a haiku", model="gpt-4.1")
    """

    spec = vendor("openai")
    prices_done: ClassVar[bool] = True
    content_parts: ClassVar[frozenset[str]] = frozenset({"image", "image_url", "document"})

    def _make_client(self) -> openai.AsyncOpenAI:
        options: dict[str, Any] = {k: self.options[k] for k in _CLIENT_OPTIONS if k in self.options}
        limit = self.max_connections
        return openai.AsyncOpenAI(
            # A local server that needs no key still gets one: the SDK insists on it.
            api_key=self.api_key.get_secret_value() or "no-key",
            base_url=self.base_url,
            max_retries=0,  # retries belong to rxllm's retry operator, not hidden in the SDK
            # timeout= bounds connecting, sending and each read (headers, then every
            # chunk), never the whole stream. Waiting for a pool slot is not bounded: a
            # queued stream has not failed (bound it with timeout(first_token=/total=)).
            timeout=httpx2.Timeout(self.timeout, pool=None),
            # The SDK's default client with a pool of max_connections: more streams queue.
            http_client=openai.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=limit, max_keepalive_connections=limit)
            ),
            **options,
        )

    async def _close_client(self, client: openai.AsyncOpenAI) -> None:
        await client.close()

    def _params(self, request: StreamRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        system = request.system_prompt()
        if system is not None:
            messages.append({"role": "system", "content": system})
        messages.extend(_message(m) for m in request.conversation())
        params: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            params["tools"] = [_tool(t.name, t.description, t.parameters) for t in request.tools]
            choice = request.tool_choice
            if choice is not None:
                params["tool_choice"] = (
                    choice
                    if choice in ("auto", "none", "required")
                    else {"type": "function", "function": {"name": choice}}
                )
            if request.parallel_tool_calls is not None:
                params["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.response_format.name,
                    "schema": dict(request.response_format.schema),
                    "strict": False,  # see the module docstring
                },
            }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        max_tokens = self.max_tokens(request)
        if max_tokens is not None:
            params["max_completion_tokens"] = max_tokens
        if request.stop:
            params["stop"] = list(request.stop)
        if request.reasoning:
            params["reasoning_effort"] = (
                "medium" if request.reasoning is True else request.reasoning
            )
        params.update(request.options)
        return params

    async def _batches(self, request: StreamRequest) -> AsyncIterator[list[StreamEvent]]:
        client = self.client()
        model = request.model
        with _ERRORS.scope(
            provider=self.name,
            model=model,
            secret=self.api_key.get_secret_value(),
            timeout=self.timeout,
        ) as scope:
            create = client.chat.completions.with_streaming_response.create
            async with _POST.open(client, self._params(request), create) as http:
                scope.reading = True
                scope.expect_event_stream(http.headers.get("content-type"), http.status_code)
                finish: str | None = None
                usage: Mapping[str, Any] | None = None
                served_model = model
                completion_id: str | None = None
                refused = False
                done = False
                calls: _Calls | None = None
                loads = json.loads
                text_chunk = openai_text_chunk
                framer = SSEFramer()
                reads = body_reads(http)
                async for read in reads:
                    batch: list[StreamEvent] = []  # this read's events
                    add = batch.append
                    try:
                        for data in framer.feed_data(read):
                            try:  # the plain text chunk, typed (see _typed.openai_chunk)
                                text = text_chunk(data).choices[0].delta.content
                            except TypedError:
                                text = ""
                            if text:
                                add(TokenEvent(text))
                                continue
                            if data[:6] == b"[DONE]":  # not JSON: the typed reading declined
                                done = True
                                break
                            chunk = loads(data)
                            choices = chunk.get("choices")
                            if choices:
                                choice = choices[0]
                                delta = choice.get("delta")
                                if delta:
                                    content = delta.get("content")
                                    if content:
                                        add(TokenEvent(content))
                                        if len(delta) > 1 and delta.get("tool_calls"):
                                            # A compatible server that sends text and a call
                                            # together.
                                            calls = calls or _Calls()
                                            batch.extend(calls.read(delta["tool_calls"]))
                                    elif len(delta) > 1 or "content" not in delta:
                                        reasoning = delta.get("reasoning_content") or delta.get(
                                            "reasoning"
                                        )
                                        if reasoning:
                                            add(ReasoningEvent(reasoning))
                                        refusal = delta.get("refusal")
                                        if refusal:
                                            refused = True
                                            add(TokenEvent(refusal))
                                        fragments = delta.get("tool_calls")
                                        if fragments:
                                            calls = calls or _Calls()
                                            batch.extend(calls.read(fragments))
                                reason = choice.get("finish_reason")
                                if reason:
                                    finish = reason
                                    completion_id = chunk.get("id")
                                    served_model = chunk.get("model") or model
                            elif "error" in chunk:
                                raise _in_band_error(chunk["error"], scope)
                            if chunk.get("usage"):
                                usage = chunk["usage"]
                    except Exception:
                        if batch:  # what the read brought before the error is delivered
                            yield batch
                        raise
                    if batch:
                        yield batch
                    if done:
                        break
                if done and http.http_version == "HTTP/1.1":
                    await drain(reads)  # the chunked terminator: the connection is reused
            if not done or finish is None:
                raise scope.incomplete("[DONE]" if finish is not None else "a finish_reason chunk")
            # In the scope: the usage and finish reason came from the wire.
            done_event = _done(finish, usage, served_model, completion_id, refused, self.name)
            yield [self._priced(done_event, request)]


def _tool(name: str, description: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    function["parameters"] = dict(parameters)
    return {"type": "function", "function": function}


def _message(message: Message) -> dict[str, Any]:
    """One conversation turn in the Chat Completions shape."""
    role = message.role
    if role == "tool":
        text = message.text
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": f"Error: {text}" if message.is_error else text,
        }
    if role == "assistant":
        calls = [call for call in message.tool_calls if not call.server_side]
        if not calls:
            return {"role": "assistant", "content": message.text}
        return {
            "role": "assistant",
            "content": message.text or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call in calls
            ],
        }
    if isinstance(message.content, str):
        return {"role": role, "content": message.content}
    return {"role": role, "content": [_part(part, i) for i, part in enumerate(message.content)]}


def _part(part: Part, number: int) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        url = part.url if part.url is not None else part.data_url()
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(part, DocumentPart) and part.data is not None:
        # The API wants a file name with inline data; the part has none of its own.
        return {
            "type": "file",
            "file": {"filename": f"document-{number + 1}.pdf", "file_data": part.data_url()},
        }
    # Provider._check_parts refuses document URLs before the request is built.
    raise errors.UnsupportedContentError(f"Chat Completions cannot take {part.describe()}")


class _Calls:
    """Numbers the tool calls of one reply and turns their fragments into delta events.

    OpenAI sends ``{index, id, type, function: {name, arguments: ""}}`` to start a
    call and ``{index, function: {arguments}}`` after; compatible servers may repeat
    the id on every fragment, send a whole call at once, or leave ``index`` out.
    """

    __slots__ = ("_by_id", "_by_index", "_last")

    def __init__(self) -> None:
        self._by_index: dict[Any, int] = {}
        self._by_id: dict[str, int] = {}
        self._last = -1

    def read(self, fragments: Any) -> list[ToolCallDeltaEvent]:
        out: list[ToolCallDeltaEvent] = []
        for fragment in fragments if isinstance(fragments, list) else ():
            if not isinstance(fragment, dict):
                continue
            function = fragment.get("function") or {}
            arguments = function.get("arguments") or ""
            if not isinstance(arguments, str):  # a server that sends the arguments parsed
                arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
            call_id = fragment.get("id") or None
            vendor_index = fragment.get("index")
            number: int | None = None
            if call_id is not None and call_id in self._by_id:
                number = self._by_id[call_id]
            elif call_id is None:
                if vendor_index is not None:
                    number = self._by_index.get(vendor_index)
                elif self._last >= 0:
                    number = self._last
            if number is not None:
                if arguments:
                    out.append(ToolCallDeltaEvent(number, arguments))
                continue
            self._last = number = self._last + 1
            if vendor_index is not None:
                self._by_index[vendor_index] = number
            if call_id is not None:
                self._by_id[call_id] = number
            name = function.get("name")
            out.append(
                ToolCallDeltaEvent(
                    number, arguments, id=call_id, name=name if isinstance(name, str) else None
                )
            )
        return out


def _done(
    finish: str,
    usage: Mapping[str, Any] | None,
    model: str,
    completion_id: str | None,
    refused: bool,
    provider: str,
) -> DoneEvent:
    prompt = completion = reasoning = cached = 0
    if usage:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    details: dict[str, Any] = {"finish_reason": finish, "id": completion_id}
    if cached:
        details["cached_tokens"] = cached
    if usage is None:
        details["usage_missing"] = True  # a compatible server that ignores include_usage
    reason = FinishReason.CONTENT_FILTER if refused else _FINISH.get(finish, FinishReason.STOP)
    return DoneEvent(
        # OpenAI already counts reasoning inside completion_tokens; clamp a server that does not.
        usage=Usage(
            prompt_tokens=prompt,
            completion_tokens=max(completion, reasoning),
            reasoning_tokens=reasoning,
        ),
        finish_reason=reason,
        model=model,
        provider=provider,
        details=details,
    )

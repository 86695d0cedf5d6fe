"""Anthropic Claude on the official ``anthropic`` SDK (Messages API, streamed).

The SDK builds, authenticates and sends the request and raises its typed status
errors (``client.messages.with_streaming_response.create``); the events are then
read with the SDK's own SSE decoder and ``json.loads``, skipping the pydantic model
the SDK would build per chunk (the hot path; see ``bench/``).

Mapping:

- ``system`` → ``system``; the conversation → ``messages`` (a trailing assistant
  turn is Anthropic's native prefill, which the reply continues);
  ``stop`` → ``stop_sequences``; ``max_tokens`` → ``max_tokens`` (required by the
  API: when a request sets none, the provider's default, 4096 unless configured with
  ``max_tokens`` in the settings; raised above a thinking budget).
- ``reasoning`` → ``thinking={"type": "enabled", "budget_tokens": ...}`` with
  budgets low 1024, medium/``True`` 4096, high 16384, always below ``max_tokens``.
  Not sent for a prefilled (continued) request: the API then wants the final
  assistant turn to start with a thinking block, which a continuation lacks.
- ``temperature`` is not sent: anthropic 2.x speaks API version 2026-10-21, which
  removed the sampling parameters (any of them is a 400). ``done.details["ignored"]``
  says so when one was asked for.
- ``text_delta`` → ``TokenEvent``; ``thinking_delta`` → ``ReasoningEvent``.
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
from ..events import DoneEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent, Usage
from ..provider import Provider
from ..request import StreamRequest
from ..vendors import vendor
from ._common import ErrorRules, ErrorScope, retry_after_from_headers, transport_failure

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
    continues_prefill: ClassVar[bool] = True  # Anthropic continues a trailing assistant turn

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
            "messages": [{"role": m.role, "content": m.content} for m in turns],
            "stream": True,
        }
        system = request.system_prompt()
        if system is not None:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        max_tokens = request.max_tokens
        budget = _THINKING_BUDGET.get(request.reasoning) if request.reasoning else None
        if budget is not None and request.prefill:
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
        params.update(request.options)
        return params

    # -- response -----------------------------------------------------------------------------

    async def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        client = self.client()
        params = self._params(request)
        state = _StreamState(request.model)
        with _ERRORS.scope(
            provider=self.name,
            model=request.model,
            secret=self.api_key.get_secret_value(),
            timeout=self.timeout,
        ) as scope:
            async with client.messages.with_streaming_response.create(**params) as raw:
                scope.reading = True
                http = raw.http_response
                scope.expect_event_stream(http.headers.get("content-type"), http.status_code)
                # The SDK's own SSE decoder over the body, without a model per event.
                async for sse in anthropic.AsyncStream.raw_events(raw.http_response):
                    kind = sse.event
                    if kind == "content_block_delta":
                        delta = json.loads(sse.data)["delta"]
                        delta_type = delta["type"]
                        if delta_type == "text_delta":
                            yield TokenEvent(delta["text"])
                        elif delta_type == "thinking_delta" and delta["thinking"]:
                            yield ReasoningEvent(delta["thinking"])
                        # signature_delta, input_json_delta, citations_delta: not text.
                    elif kind == "message_start":
                        state.start(json.loads(sse.data)["message"])
                    elif kind == "message_delta":
                        state.delta(json.loads(sse.data))
                    elif kind == "message_stop":
                        state.stopped = True
                    elif kind == "error":
                        raise _in_band_error(sse.data, scope)
                    # ping, content_block_start/stop; and, as the API docs ask of clients,
                    # event types added later are ignored rather than fatal.
            if not state.stopped:
                raise scope.incomplete(f"its message_stop event (after {state.where()})")
            yield state.done(self.name, request)  # in the scope: its fields came from the wire


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


class _StreamState:
    """What a stream said about itself besides text: ids, usage, stop reason."""

    __slots__ = (
        "cache_creation",
        "cache_read",
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
        if request.temperature is not None:
            details["ignored"] = ("temperature",)
        finish = _FINISH.get(self.stop_reason or "end_turn", FinishReason.STOP)
        return DoneEvent(
            usage=usage, finish_reason=finish, model=self.model, provider=provider, details=details
        )

"""OpenTelemetry spans for every request a provider sends, on the GenAI semantic conventions.

Optional: with ``opentelemetry-api`` installed (``pip install 'rxllm[tracing]'``)
and a tracer provider configured by the application, each request a provider
sends — each attempt of a retried stream too — is one ``CLIENT`` span named
``chat {model}`` with:

=====================================  ===============================================
``gen_ai.operation.name``              ``"chat"``
``gen_ai.provider.name``               ``anthropic``, ``openai``, ``gcp.gemini``,
                                       ``x_ai``, or the vendor's name (``gen_ai.system``
                                       too, for backends on the older conventions)
``gen_ai.request.model``               the model asked for
``gen_ai.request.max_tokens``,         when set
``gen_ai.request.temperature``,
``gen_ai.request.stop_sequences``
``server.address``, ``server.port``    from the provider's base URL, when it has one
``gen_ai.response.model``,             from the final ``done`` event
``gen_ai.response.id``,
``gen_ai.response.finish_reasons``
``gen_ai.usage.input_tokens``,         the normalized usage (``rxllm.usage.*`` adds
``gen_ai.usage.output_tokens``         reasoning tokens and the cost in USD)
``rxllm.resumed``                      the request continues a cut reply
``error.type``                         the rxllm error class, when the stream failed
=====================================  ===============================================

and an event ``rxllm.first_token`` (``rxllm.time_to_first_token``, seconds) when
the first token or reasoning arrives. ``retry_on_interrupt`` adds an event
``rxllm.retry`` (attempt, error type, delay) to the span that was current when the
stream was subscribed. A stream stopped by its consumer ends its span with
``rxllm.stopped = true`` and no error.

Never the prompt or the reply: set ``RXLLM_TRACE_CONTENT=1`` (or call
``capture_content(True)``) to add them as ``gen_ai.input.messages`` and
``gen_ai.output.messages`` (JSON, as the conventions lay them out).

No overhead when ``opentelemetry-api`` is absent, or when no tracer provider is
configured (the API's default, non-recording one): the provider's events are
passed on untouched. ``RXLLM_TRACING=0`` turns it off regardless.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from .events import DoneEvent, ReasoningEvent, StreamEvent, TokenEvent
from .request import StreamRequest

if TYPE_CHECKING:
    from .stream import EventSource

try:  # optional dependency
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on the environment
    _trace = None  # type: ignore[assignment]

__all__ = [
    "PROVIDER_NAMES",
    "capture_content",
    "current_span",
    "enabled",
    "record_retry",
    "spanned",
    "start_span",
    "traced",
]

TRACER_NAME = "rxllm"

PROVIDER_NAMES: Mapping[str, str] = {
    "anthropic": "anthropic",
    "openai": "openai",
    "gemini": "gcp.gemini",
    "grok": "x_ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "mistral": "mistral_ai",
}
"""rxllm's vendor names as the GenAI conventions' ``gen_ai.provider.name`` values."""

_capture: bool | None = None


def enabled() -> bool:
    """Whether spans can be made at all (the API is installed and not switched off)."""
    return _trace is not None and os.environ.get("RXLLM_TRACING", "1") not in ("0", "false")


def capture_content(on: bool | None) -> None:
    """Record prompts and replies on spans (``None``: follow ``RXLLM_TRACE_CONTENT``)."""
    global _capture
    _capture = on


def _capturing() -> bool:
    if _capture is not None:
        return _capture
    return os.environ.get("RXLLM_TRACE_CONTENT", "") in ("1", "true")


def traced(
    provider: EventSource, request: StreamRequest, events: AsyncIterator[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    """``events`` inside a span, or ``events`` itself when no span would be recorded."""
    span = start_span(provider, request)
    return events if span is None else spanned(span, request, events)


def start_span(provider: EventSource, request: StreamRequest) -> Any:
    """The span of one request, started; ``None`` when none would be recorded."""
    if not enabled():
        return None
    assert _trace is not None
    if isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider):
        # No tracer provider set (only the API's stand-in): nothing can record, so skip
        # building the span and its attributes (~40 µs a request).
        return None
    tracer = _trace.get_tracer(TRACER_NAME)
    span = tracer.start_span(
        f"chat {request.model}",
        kind=_trace.SpanKind.CLIENT,
        attributes=_request_attributes(provider, request),
    )
    if not span.is_recording():
        span.end()
        return None
    return span


async def spanned(
    span: Any, request: StreamRequest, events: AsyncIterator[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    assert _trace is not None
    started = time.perf_counter()
    first = True
    text: list[str] | None = [] if _capturing() else None
    try:
        async for event in events:
            if first and isinstance(event, TokenEvent | ReasoningEvent):
                first = False
                span.add_event(
                    "rxllm.first_token",
                    {"rxllm.time_to_first_token": time.perf_counter() - started},
                )
            if text is not None and isinstance(event, TokenEvent):
                text.append(event.text)
            if isinstance(event, DoneEvent):
                span.set_attributes(_done_attributes(event, text))
            yield event
    except (GeneratorExit, asyncio.CancelledError):
        span.set_attribute("rxllm.stopped", True)  # the consumer stopped: not an error
        raise
    except BaseException as error:
        span.set_attribute("error.type", type(error).__name__)
        span.record_exception(error)
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        span.end()


def record_retry(span: Any, attempt: int, error: BaseException, delay: float) -> None:
    """Add a ``rxllm.retry`` event to ``span`` (what was current when the stream began)."""
    if span is None or not span.is_recording():
        return
    span.add_event(
        "rxllm.retry",
        {
            "rxllm.attempt": attempt,
            "error.type": type(error).__name__,
            "rxllm.retry_delay": delay,
        },
    )


def current_span() -> Any:
    """The span current now, or ``None`` (for operators that report on it later)."""
    if not enabled():
        return None
    assert _trace is not None
    span = _trace.get_current_span()
    return span if span.is_recording() else None


def _request_attributes(provider: EventSource, request: StreamRequest) -> dict[str, Any]:
    name = PROVIDER_NAMES.get(provider.name, provider.name)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": name,
        "gen_ai.system": name,
        "gen_ai.request.model": request.model,
    }
    if request.max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = request.max_tokens
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = float(request.temperature)
    if request.stop:
        attributes["gen_ai.request.stop_sequences"] = list(request.stop)
    if request.prefill:
        attributes["rxllm.resumed"] = True
    base_url = getattr(provider, "base_url", None)
    if isinstance(base_url, str) and base_url:
        parsed = urllib.parse.urlsplit(base_url if "://" in base_url else f"//{base_url}")
        if parsed.hostname:
            attributes["server.address"] = parsed.hostname
        if parsed.port:
            attributes["server.port"] = parsed.port
    if _capturing():
        messages = [{"role": "system", "parts": [{"type": "text", "content": request.system}]}]
        if not request.system:
            messages = []
        messages += [
            {"role": m.role, "parts": [{"type": "text", "content": m.content}]}
            for m in request.conversation()
        ]
        attributes["gen_ai.input.messages"] = json.dumps(messages, ensure_ascii=False)
    return attributes


def _done_attributes(done: DoneEvent, text: list[str] | None) -> dict[str, Any]:
    usage = done.usage
    attributes: dict[str, Any] = {
        "gen_ai.response.model": done.model,
        "gen_ai.response.finish_reasons": [str(done.finish_reason)],
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "rxllm.usage.reasoning_tokens": usage.reasoning_tokens,
    }
    if usage.cost is not None:
        attributes["rxllm.usage.cost_usd"] = usage.cost
    response_id = done.details.get("id") or done.details.get("response_id")
    if isinstance(response_id, str) and response_id:
        attributes["gen_ai.response.id"] = response_id
    if done.details.get("usage_estimated"):
        attributes["rxllm.usage.estimated"] = True
    if text is not None:
        reply = [{"role": "assistant", "parts": [{"type": "text", "content": "".join(text)}]}]
        attributes["gen_ai.output.messages"] = json.dumps(reply, ensure_ascii=False)
    return attributes

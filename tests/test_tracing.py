"""OpenTelemetry spans on the GenAI conventions, read back with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import rxllm
from rxllm import tracing
from rxllm.emulator import Emulator
from rxllm.operators import Backoff, retry_on_interrupt
from tests.operators.emulated import NAMES, build, model, run, text_of

EXPORTER = InMemorySpanExporter()
PROMPT = "A secret prompt 7f3a"


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> Iterator[None]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    # The global provider can be set once per process: a proxy lets later tests see it.
    trace.set_tracer_provider(provider)
    yield
    tracing.capture_content(None)


@pytest.fixture(autouse=True)
def fresh() -> None:
    EXPORTER.clear()
    tracing.capture_content(None)


def chat_spans() -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.name.startswith("chat ")]


@pytest.mark.parametrize("name", NAMES)
async def test_each_request_is_one_client_span_with_the_genai_attributes(
    name: str, emulator: Emulator
) -> None:
    provider = build(name, emulator)
    try:
        events, error = await run(provider.stream(PROMPT, model=model(name), max_tokens=12))
    finally:
        await provider.aclose()
    assert error is None
    done = events[-1]
    (span,) = chat_spans()
    attributes = dict(span.attributes or {})
    assert span.name == f"chat {model(name)}"
    assert span.kind is trace.SpanKind.CLIENT
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == tracing.PROVIDER_NAMES[name]
    assert attributes["gen_ai.request.model"] == model(name)
    assert attributes["gen_ai.request.max_tokens"] == 12
    assert attributes["gen_ai.usage.input_tokens"] == done.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == done.usage.completion_tokens
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["server.address"] == "127.0.0.1"
    assert "rxllm.resumed" not in attributes
    assert [e.name for e in span.events] == ["rxllm.first_token"]
    assert span.events[0].attributes["rxllm.time_to_first_token"] >= 0
    # Never the prompt or the reply unless asked for.
    shown = repr(attributes) + repr([e.attributes for e in span.events])
    assert PROMPT not in shown
    assert text_of(events)[:20] not in shown


async def test_content_is_recorded_only_when_asked_for(emulator: Emulator) -> None:
    tracing.capture_content(True)
    provider = build("anthropic", emulator)
    try:
        events, _ = await run(provider.stream(PROMPT, model=model("anthropic"), max_tokens=5))
    finally:
        await provider.aclose()
    (span,) = chat_spans()
    attributes = dict(span.attributes or {})
    assert PROMPT in str(attributes["gen_ai.input.messages"])
    assert text_of(events) in str(attributes["gen_ai.output.messages"])


async def test_a_failed_request_is_an_error_span_naming_the_rxllm_error(emulator: Emulator) -> None:
    provider = build("openai", emulator)
    try:
        _, error = await run(provider.stream("Hi", model=model("openai", fault="rate_limited")))
    finally:
        await provider.aclose()
    (span,) = chat_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "RateLimitedError" == type(error).__name__
    assert any(e.name == "exception" for e in span.events)


async def test_a_retried_stream_is_one_span_per_attempt_under_the_callers_span(
    emulator: Emulator,
) -> None:
    provider = build("gemini", emulator)
    stream = provider.stream("Hi", model=model("gemini", fault="drop", after=4, times=1)).pipe(
        retry_on_interrupt(3, backoff=Backoff(initial=0.01, jitter=0))
    )
    tracer = trace.get_tracer("test")
    try:
        with tracer.start_as_current_span("handler") as parent:
            events, error = await run(stream)
    finally:
        await provider.aclose()
    assert error is None
    assert text_of(events)
    first, second = chat_spans()
    assert (first.attributes or {})["error.type"] == "StreamInterruptedError"
    assert (second.attributes or {})["rxllm.resumed"] is True
    for attempt in (first, second):
        assert attempt.parent is not None
        assert attempt.parent.span_id == parent.get_span_context().span_id
    (handler,) = [s for s in EXPORTER.get_finished_spans() if s.name == "handler"]
    retries = [e for e in handler.events if e.name == "rxllm.retry"]
    assert len(retries) == 1
    assert retries[0].attributes["error.type"] == "StreamInterruptedError"


async def test_a_stream_stopped_by_its_consumer_ends_its_span_without_an_error(
    emulator: Emulator,
) -> None:
    provider = build("grok", emulator)
    got_one = asyncio.Event()
    subscription = provider.stream("Hi", model=model("grok", tps=50, words=500)).subscribe(
        on_next=lambda _: got_one.set()
    )
    try:
        await asyncio.wait_for(got_one.wait(), 10)
        subscription.dispose()
        await emulator.wait_for_disconnects_async(1)
        for _ in range(100):
            if chat_spans():
                break
            await asyncio.sleep(0.01)
    finally:
        await provider.aclose()
    (span,) = chat_spans()
    assert (span.attributes or {})["rxllm.stopped"] is True
    assert span.status.status_code is not trace.StatusCode.ERROR


def test_without_a_tracer_provider_or_without_opentelemetry_nothing_is_wrapped() -> None:
    check = (
        "import sys, asyncio\n"
        "{block}"
        "import rxllm\n"
        "from rxllm import tracing\n"
        "from rxllm.request import StreamRequest\n"
        "async def events():\n"
        "    yield None\n"
        "source = events()\n"
        "class P:\n"
        "    name = 'openai'\n"
        "print(tracing.traced(P(), StreamRequest(model='m', prompt='p'), source) is source)\n"
    )
    for block in ("", "sys.modules['opentelemetry'] = None\n"):
        out = subprocess.run(
            [sys.executable, "-c", check.format(block=block)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == "True", out.stderr
    assert rxllm.tracing.enabled()

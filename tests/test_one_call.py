"""One call per common task: ``generate_sync``, ``generate(timeout=, operators=)``,
``stream(messages=...)`` without a prompt, and every request field as a keyword."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import rxllm
from rxllm import errors, registry
from rxllm.compare import compare
from rxllm.emulator import Emulator
from rxllm.events import DoneEvent, FinishReason, StreamEvent, TokenEvent, Usage
from rxllm.operators import retry_on_interrupt, take_tokens
from rxllm.provider import Provider
from rxllm.registry import BoundModel
from rxllm.request import Message, StreamRequest
from rxllm.testing import EMULATOR_KEY
from rxllm.tools import Tool
from rxllm.vendors import OPENAI_MAPPER, ProviderSpec

SPEC = "openai:gpt-4o"


def bind(emu: Emulator, spec: str = SPEC) -> BoundModel:
    name = spec.split(":", 1)[0]
    return registry.model(spec, api_key=EMULATOR_KEY, base_url=emu.base_url(name))


# -- scripts ------------------------------------------------------------------------------


def test_generate_sync_gives_the_reply_in_a_plain_script(emulator_thread: Emulator) -> None:
    bound = bind(emulator_thread)
    try:
        text = bound.generate_sync("Say hello", max_tokens=20)
        again = bound.provider.generate_sync("Say hello", model="gpt-4o", max_tokens=20)
        cut = bound.generate_sync("Say hello", operators=[take_tokens(3)])
    finally:
        bound.provider.close()
    assert text
    assert again == text  # the emulator is deterministic: the same request, the same reply
    assert len(emulator_thread.requests) == 3
    assert emulator_thread.requests[0].body["max_completion_tokens"] == 20
    assert text.startswith(cut)
    assert cut != text


# -- generate with operators and a deadline -------------------------------------------------


async def test_generate_takes_the_operators_a_stream_takes(emulator: Emulator) -> None:
    bound = bind(emulator)
    try:
        result = await bound.complete("Tell me a story", operators=[take_tokens(5)])
        text = await bound.generate("Tell me a story", operators=[take_tokens(5)])
        provider_text = await bound.provider.generate(
            "Tell me a story", model="gpt-4o", operators=[take_tokens(5)]
        )
    finally:
        await bound.provider.aclose()
    assert result.finish_reason is FinishReason.TOKEN_LIMIT
    assert result.text == text == provider_text
    assert len(text.split()) <= 5


async def test_generate_timeout_is_a_deadline_for_the_whole_call(emulator: Emulator) -> None:
    slow = bind(emulator, SPEC + "~tps=10")  # 60 words at 10 a second: about 6 s
    try:
        started = time.monotonic()
        with pytest.raises(errors.TimeoutError) as raised:
            await slow.generate("Tell me a story", timeout=0.5)
        elapsed = time.monotonic() - started
        assert await slow.generate("Hi", max_tokens=3, timeout=30)
    finally:
        await slow.provider.aclose()
    assert raised.value.phase == "total"
    assert elapsed < 3
    assert emulator.requests[0].disconnected


async def test_the_deadline_covers_the_operators_retries_too(emulator: Emulator) -> None:
    # Every attempt is cut; the deadline ends the call, whatever the retries would do.
    bound = bind(emulator, SPEC + "~fault=drop,after=2,tps=20")
    try:
        with pytest.raises(errors.TimeoutError):
            await bound.generate("Hi", operators=[retry_on_interrupt(50, backoff=0.2)], timeout=1)
    finally:
        await bound.provider.aclose()
    assert 1 < len(emulator.requests) < 50


# -- a request from keywords alone ------------------------------------------------------------


async def test_a_bound_model_streams_messages_without_a_prompt(emulator: Emulator) -> None:
    bound = bind(emulator)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    try:
        stream = bound.stream(messages=messages, max_tokens=10)
        result = await rxllm.collect(stream)
        text = await bound.generate(messages=messages, max_tokens=10)
    finally:
        await bound.provider.aclose()
    assert stream.request.prompt is None
    assert stream.request.model == "gpt-4o"
    assert result.text == text
    assert emulator.requests[0].body["messages"][-1] == {"role": "user", "content": "Hi"}


class Recorder(Provider[None]):
    """Records each request it streams; replies with one token."""

    spec = ProviderSpec(name="recorder", mapper=OPENAI_MAPPER, key_required=False)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: list[StreamRequest] = []

    def _make_client(self) -> None:
        return None

    async def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        self.seen.append(request)
        # Structured output: the JSON string "ok".
        yield TokenEvent('"ok"' if request.response_format else "ok")
        yield DoneEvent(Usage(1, 1), FinishReason.STOP, request.model, self.name)


EVERY_FIELD: dict[str, Any] = {
    "model": "rec-1",
    "prompt": "And now?",
    "messages": (Message("system", "Terse."), Message("user", "Hi"), Message("assistant", "Hey")),
    "system": "Be kind.",
    "temperature": 0.5,
    "max_tokens": 7,
    "stop": ("\n\n",),
    "reasoning": "low",
    "tools": (Tool("lookup", "Look it up."),),
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "response_format": {"type": "string"},
    "options": {"seed": 1},
}


def test_the_keywords_cover_every_request_field() -> None:
    assert set(EVERY_FIELD) == {f.name for f in dataclasses.fields(StreamRequest)}


async def test_every_request_field_is_a_keyword_of_stream_generate_and_compare() -> None:
    provider = Recorder()
    bound = BoundModel(provider, "rec-1")
    wanted = StreamRequest(**EVERY_FIELD)

    assert provider.stream(**EVERY_FIELD).request == wanted
    assert bound.stream(**EVERY_FIELD).request == wanted
    assert await provider.generate(**EVERY_FIELD) == '"ok"'
    assert await bound.generate(**EVERY_FIELD) == '"ok"'
    comparison = compare(models=[bound], **EVERY_FIELD)
    results = await comparison.collect()
    assert results["recorder:rec-1"].text == '"ok"'
    assert provider.seen == [wanted, wanted, wanted]
    assert all(seen.options == {"seed": 1} for seen in provider.seen)


def test_a_prompt_given_twice_or_not_at_all_is_refused() -> None:
    bound = BoundModel(Recorder(), "rec-1")
    with pytest.raises(TypeError, match="prompt twice"):
        bound.stream("Hi", prompt="Hello")
    with pytest.raises(ValueError, match="needs a prompt or messages"):
        bound.stream(max_tokens=5)

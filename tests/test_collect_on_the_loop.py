"""``rxllm.collect`` folds on the calling loop (not through ``aiter``'s channel): what a
user sees of it stays the same. Cancelling the ``await`` closes the connection, the
server sees the disconnect; a stream that ends on another thread (an operator with its
own scheduler) still completes the ``await``; on every vendor the result is whole."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.scheduler import ThreadPoolScheduler

import rxllm
from rxllm import DoneEvent, FinishReason, TokenEvent, Usage
from rxllm.emulator import Emulator

from .operators.emulated import NAMES, build, model

SAFETY = 10  # a guard against a hang only; no timing is asserted


@pytest.mark.parametrize("name", NAMES)
async def test_cancelling_collect_closes_the_connection(name: str, emulator: Emulator) -> None:
    provider = build(name, emulator)
    try:
        first = asyncio.Event()
        stream = provider.stream("Hi", model=model(name, tps=50, words=2000))
        task = asyncio.create_task(
            rxllm.collect(stream.pipe(ops.do_action(on_next=lambda _: first.set())))
        )
        await asyncio.wait_for(first.wait(), SAFETY)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (request,) = await emulator.wait_for_disconnects_async(1, timeout=SAFETY)
        assert request.disconnected
        assert not request.completed
    finally:
        await provider.aclose()


@pytest.mark.parametrize("name", NAMES)
async def test_collect_gets_the_whole_reply_and_its_usage(name: str, emulator: Emulator) -> None:
    provider = build(name, emulator)
    try:
        events = [e async for e in rxllm.aiter(provider.stream("Hi", model=model(name, words=40)))]
        result = await rxllm.collect(provider.stream("Hi", model=model(name, words=40)))
    finally:
        await provider.aclose()
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert result.text == "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert result.text
    assert result.usage == done.usage
    assert result.usage.completion_tokens > 0


async def test_collect_completes_when_the_stream_ends_on_another_thread() -> None:
    done = DoneEvent(
        usage=Usage(prompt_tokens=1, completion_tokens=2),
        finish_reason=FinishReason.STOP,
        model="m",
        provider="p",
    )
    events: list[Any] = [TokenEvent("a"), TokenEvent("b"), done]
    pool = ThreadPoolScheduler(1)
    stream = reactivex.from_iterable(events).pipe(ops.observe_on(pool))
    result = await asyncio.wait_for(rxllm.collect(stream), SAFETY)
    assert result.text == "ab"
    assert result.usage.completion_tokens == 2


async def test_collect_raises_the_streams_error_from_another_thread() -> None:
    pool = ThreadPoolScheduler(1)
    stream = reactivex.throw(rxllm.errors.ServerError("boom", provider="p", model="m")).pipe(
        ops.observe_on(pool)
    )
    with pytest.raises(rxllm.errors.ServerError, match="boom"):
        await asyncio.wait_for(rxllm.collect(stream), SAFETY)

"""Consuming a stream: collect, the bounded aiter, and the blocking iterate / collect_sync."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable

import pytest
import reactivex
from reactivex import operators as ops

import rxllm
from rxllm import (
    DoneEvent,
    ErrorEvent,
    FinishReason,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    Usage,
    errors,
    from_async_iterable,
)
from rxllm.bridge import BlockingCallInEventLoopError

from .sources import EndlessSource, EventSource, done, reply, wait_until_set


def full_reply() -> list[rxllm.StreamEvent]:
    return [
        ReasoningEvent("think "),
        ReasoningEvent("hard"),
        TokenEvent("Hel"),
        TokenEvent("lo"),
        DoneEvent(
            usage=Usage(prompt_tokens=5, completion_tokens=7, reasoning_tokens=4, cost=0.5),
            finish_reason=FinishReason.LENGTH,
            model="m-1",
            provider="p",
            details={"ignored": ("temperature",), "winner": "p:m-1"},
        ),
    ]


# -- collect / collect_sync ----------------------------------------------------------------


async def test_collect_returns_text_reasoning_usage_and_finish_reason() -> None:
    result = await rxllm.collect(from_async_iterable(EventSource(full_reply())))

    assert result == rxllm.StreamResult(
        text="Hello",
        reasoning="think hard",
        usage=Usage(prompt_tokens=5, completion_tokens=7, reasoning_tokens=4, cost=0.5),
        finish_reason=FinishReason.LENGTH,
        model="m-1",
        provider="p",
        details={"ignored": ("temperature",), "winner": "p:m-1"},  # done.details, kept
    )


def test_collect_sync_returns_the_same_result_as_collect() -> None:
    observable = from_async_iterable(EventSource(full_reply()))
    assert rxllm.collect_sync(observable) == asyncio.run(rxllm.collect(observable))


async def test_collect_of_a_stream_without_done_raises_interrupted() -> None:
    observable = from_async_iterable(EventSource([TokenEvent("a")]))
    with pytest.raises(errors.StreamInterruptedError, match="without a done event"):
        await rxllm.collect(observable)


def test_collect_sync_of_a_stream_without_done_raises_interrupted() -> None:
    with pytest.raises(errors.StreamInterruptedError, match="without a done event"):
        rxllm.collect_sync(reactivex.of(TokenEvent("a")))


async def test_collect_raises_an_in_band_error_event() -> None:
    boom = errors.ServerError("lane failed", provider="p")
    observable = reactivex.of(TokenEvent("a"), ErrorEvent(boom), done())
    with pytest.raises(errors.ServerError) as caught:
        await rxllm.collect(observable)
    assert caught.value is boom


async def test_collect_works_on_any_observable_of_events() -> None:
    result = await rxllm.collect(reactivex.from_iterable(reply("x", "y")))
    assert result.text == "xy"


# -- aiter ---------------------------------------------------------------------------------


async def test_aiter_yields_every_event_in_order() -> None:
    events = [event async for event in rxllm.aiter(from_async_iterable(EventSource(full_reply())))]
    assert events == full_reply()


async def test_aiter_is_lazy_and_cold() -> None:
    source = EventSource(reply("a"))
    observable = from_async_iterable(source)
    iterator = rxllm.aiter(observable)
    await asyncio.sleep(0)
    assert source.record.starts == 0

    assert [e async for e in iterator] == reply("a")
    assert [e async for e in rxllm.aiter(observable)] == reply("a")
    assert source.record.starts == 2


async def test_aiter_reraises_the_streams_error_after_earlier_events() -> None:
    source = EventSource([TokenEvent("a")], error=errors.RateLimitedError("wait", retry_after=1))
    seen: list[rxllm.StreamEvent] = []

    async def consume() -> None:
        async for event in rxllm.aiter(from_async_iterable(source)):
            seen.append(event)

    with pytest.raises(errors.RateLimitedError):
        await consume()
    assert seen == [TokenEvent("a")]


@pytest.mark.parametrize("buffer", [1, 3, 16])
async def test_aiter_never_holds_more_than_buffer_pulled_but_unconsumed_events(
    buffer: int,
) -> None:
    source = EndlessSource()
    consumed = 0
    most_ahead = 0
    async with rxllm.aiter(from_async_iterable(source), buffer=buffer) as events:
        async for _ in events:
            consumed += 1
            # A slow consumer: it hands the loop over many times per event, so an
            # unbounded bridge would race far ahead.
            for _ in range(2 * buffer + 5):
                await asyncio.sleep(0)
                most_ahead = max(most_ahead, source.pulled - consumed)
            if consumed == 20:
                break

    assert most_ahead == buffer
    assert source.pulled <= consumed + buffer


async def test_aiter_stops_pulling_while_the_consumer_does_not_read() -> None:
    source = EndlessSource()
    events = rxllm.aiter(from_async_iterable(source), buffer=4)
    await anext(events)
    for _ in range(100):
        await asyncio.sleep(0)

    # One consumed, four waiting: the network read would be paused here.
    assert source.pulled == 1 + 4

    await anext(events)
    for _ in range(100):
        await asyncio.sleep(0)
    assert source.pulled == 2 + 4
    await events.aclose()


async def test_breaking_out_of_aiter_disposes_the_upstream() -> None:
    source = EventSource([TokenEvent("a"), TokenEvent("b")], hang=True)
    async for event in rxllm.aiter(from_async_iterable(source)):
        assert event == TokenEvent("a")
        break
    await wait_until_set(source.record.finished)

    assert source.record.cancelled


async def test_aclose_disposes_the_upstream() -> None:
    source = EventSource([TokenEvent("a")], hang=True)
    events = rxllm.aiter(from_async_iterable(source))
    assert await anext(events) == TokenEvent("a")

    await events.aclose()
    await wait_until_set(source.record.finished)

    assert source.record.cancelled
    with pytest.raises(StopAsyncIteration):
        await anext(events)


async def test_an_exception_in_the_loop_body_disposes_the_upstream() -> None:
    source = EventSource([TokenEvent("a")], hang=True)

    async def consume() -> None:
        async for _ in rxllm.aiter(from_async_iterable(source)):
            raise KeyError("consumer bug")

    with pytest.raises(KeyError):
        await consume()
    gc.collect()
    await wait_until_set(source.record.finished)
    assert source.record.cancelled


@pytest.mark.parametrize("buffer", [0, -1, 1.5, True])
def test_aiter_and_iterate_reject_a_buffer_below_one(buffer: object) -> None:
    observable = reactivex.empty()
    with pytest.raises(ValueError, match="buffer"):
        rxllm.aiter(observable, buffer=buffer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffer"):
        rxllm.iterate(observable, buffer=buffer)  # type: ignore[arg-type]


# -- iterate -------------------------------------------------------------------------------


def test_iterate_yields_every_event_in_order() -> None:
    assert list(rxllm.iterate(from_async_iterable(EventSource(full_reply())))) == full_reply()


def test_iterate_reraises_the_streams_error() -> None:
    source = EventSource([TokenEvent("a")], error=errors.StreamInterruptedError("dropped"))
    seen: list[rxllm.StreamEvent] = []
    with pytest.raises(errors.StreamInterruptedError, match="dropped"):
        seen.extend(rxllm.iterate(from_async_iterable(source)))
    assert seen == [TokenEvent("a")]


def test_iterate_never_holds_more_than_buffer_pulled_but_unconsumed_events() -> None:
    source = EndlessSource()
    buffer = 3
    consumed = 0
    with rxllm.iterate(from_async_iterable(source), buffer=buffer) as events:
        for _ in events:
            consumed += 1
            # Pulls happen on the background thread; whatever it managed so far,
            # it may not be more than ``buffer`` ahead of what was taken.
            assert source.pulled <= consumed + buffer
            if consumed == 200:
                break


def test_breaking_out_of_iterate_disposes_the_upstream() -> None:
    source = EventSource([TokenEvent("a"), TokenEvent("b")], hang=True)
    for event in rxllm.iterate(from_async_iterable(source)):
        assert event == TokenEvent("a")
        break

    assert source.record.finished.wait(10)
    assert source.record.cancelled


def test_iterate_runs_the_stream_off_the_calling_thread() -> None:
    source = EventSource(reply("a"))
    list(rxllm.iterate(from_async_iterable(source)))
    assert source.record.threads[0] is not threading.current_thread()


# -- blocking forms on a thread that runs an event loop -------------------------------------
# Blocking there stops the loop the stream may need (Jupyter's emulator, an SDK client made
# on it): such a call must raise at once, naming the async form, and start nothing.

BLOCKING_FORMS: dict[str, tuple[Callable[[reactivex.Observable[StreamEvent]], object], str]] = {
    "collect_sync": (rxllm.collect_sync, "await rxllm.collect("),
    "iterate": (lambda stream: next(rxllm.iterate(stream)), "rxllm.aiter("),
    "for over iterate": (lambda stream: list(rxllm.iterate(stream)), "rxllm.aiter("),
    "run": (lambda stream: stream.run(), "await rxllm.collect("),
    "piped run": (lambda stream: stream.pipe(ops.to_list()).run(), "rxllm.aiter("),
}


@pytest.mark.timeout(60)  # the failure this guards against is a hang
@pytest.mark.parametrize("form", list(BLOCKING_FORMS))
def test_a_blocking_form_inside_asyncio_run_raises_naming_the_async_form(form: str) -> None:
    block, async_form = BLOCKING_FORMS[form]
    source = EventSource(reply("a", "b"))

    async def main() -> object:
        return block(from_async_iterable(source))

    with pytest.raises(BlockingCallInEventLoopError) as raised:
        asyncio.run(main())

    assert isinstance(raised.value, RuntimeError)
    assert async_form in str(raised.value)
    assert source.record.starts == 0  # no request was made


@pytest.mark.timeout(60)
def test_the_blocking_forms_still_work_on_a_worker_thread_of_a_running_loop() -> None:
    # Made in async code, consumed off the loop thread (asyncio.to_thread): nothing blocks
    # the loop, so this works.
    async def main() -> tuple[list[StreamEvent], str, StreamEvent]:
        events = rxllm.iterate(from_async_iterable(EventSource(reply("a", "b"))))
        listed = await asyncio.to_thread(list, events)
        result = await asyncio.to_thread(
            rxllm.collect_sync, from_async_iterable(EventSource(reply("c")))
        )
        last = await asyncio.to_thread(from_async_iterable(EventSource(reply("d"))).run)
        return listed, result.text, last

    listed, text, last = asyncio.run(main())
    assert listed == reply("a", "b")
    assert text == "c"
    assert last == done()

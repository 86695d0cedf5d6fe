"""The blocking iterator closes its connection as soon as Python says the consumer is done
with it: ``close()``, the end of a ``with`` block, or garbage collection (which ends a
``for`` loop over a dropped iterator); and a close from another thread ends a waiting
``next()`` (and a waiting ``__anext__``) instead of leaving it blocked."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator

import pytest

import rxllm
from rxllm import TokenEvent, from_async_iterable
from rxllm.emulator import Emulator
from rxllm.events import StreamEvent
from rxllm.provider import Provider

from .operators.emulated import NAMES, build, model
from .sources import EventSource, wait_until_set

SAFETY = 10  # only a guard against a hang; no timing is asserted


@pytest.fixture(params=NAMES)
def slow_stream(
    request: pytest.FixtureRequest, emulator_thread: Emulator
) -> Iterator[rxllm.LLMStream]:
    """A long, slow reply from each vendor: still streaming when the consumer stops."""
    name = request.param
    provider: Provider[object] = build(name, emulator_thread)
    yield provider.stream("Hi", model=model(name, tps=50, words=2000))
    provider.close()


def assert_the_request_was_cut(emulator: Emulator) -> None:
    (request,) = emulator.wait_for_disconnects(1, SAFETY)
    assert not request.completed
    assert len(emulator.requests) == 1


def test_leaving_a_with_block_closes_the_connection(
    slow_stream: rxllm.LLMStream, emulator_thread: Emulator
) -> None:
    with rxllm.iterate(slow_stream) as events:
        for event in events:
            assert isinstance(event, StreamEvent)
            break
        # Still referenced here: Python has said nothing yet, the with block will.

    assert_the_request_was_cut(emulator_thread)


def test_close_closes_the_connection_and_ends_the_iteration(
    slow_stream: rxllm.LLMStream, emulator_thread: Emulator
) -> None:
    events = rxllm.iterate(slow_stream)
    next(events)

    events.close()

    assert_the_request_was_cut(emulator_thread)
    with pytest.raises(StopIteration):
        next(events)
    events.close()  # twice is harmless


def test_dropping_a_kept_iterator_closes_the_connection(
    slow_stream: rxllm.LLMStream, emulator_thread: Emulator
) -> None:
    events = rxllm.iterate(slow_stream)
    for _ in events:
        break

    del events
    gc.collect()

    assert_the_request_was_cut(emulator_thread)


def test_breaking_out_of_a_for_over_rxllm_iterate_closes_the_connection(
    slow_stream: rxllm.LLMStream, emulator_thread: Emulator
) -> None:
    for event in rxllm.iterate(slow_stream):
        assert isinstance(event, StreamEvent)
        break  # the loop held the only reference: CPython collects the iterator here

    assert_the_request_was_cut(emulator_thread)


def test_an_exception_in_the_loop_body_closes_the_connection(
    slow_stream: rxllm.LLMStream, emulator_thread: Emulator
) -> None:
    def consume() -> None:
        for _ in rxllm.iterate(slow_stream):
            raise KeyError("consumer bug")

    with pytest.raises(KeyError):
        consume()

    assert_the_request_was_cut(emulator_thread)


# -- a close from elsewhere wakes a consumer that waits -------------------------------------


def test_close_from_another_thread_ends_a_next_that_waits() -> None:
    source = EventSource([TokenEvent("a")], hang=True)
    events = rxllm.iterate(from_async_iterable(source))
    assert next(events) == TokenEvent("a")
    outcome: list[str] = []

    def wait_for_the_next_event() -> None:
        try:
            next(events)
            outcome.append("an event")
        except StopIteration:
            outcome.append("stopped")

    waiting = threading.Thread(target=wait_for_the_next_event)
    waiting.start()
    events.close()
    waiting.join(SAFETY)

    assert not waiting.is_alive(), "next() still blocked after close()"
    assert outcome == ["stopped"]
    assert source.record.finished.wait(SAFETY)
    assert source.record.cancelled


async def test_aclose_from_another_task_ends_an_anext_that_waits() -> None:
    source = EventSource([TokenEvent("a")], hang=True)
    events = rxllm.aiter(from_async_iterable(source))
    assert await anext(events) == TokenEvent("a")
    waiting = asyncio.create_task(anext(events, None))
    await asyncio.sleep(0)  # let it start waiting

    await events.aclose()

    assert await asyncio.wait_for(waiting, SAFETY) is None
    await wait_until_set(source.record.finished)
    assert source.record.cancelled

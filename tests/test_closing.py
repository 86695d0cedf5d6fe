"""Closing a provider while its streams run: each stream closes its connection and ends
at once with ``rxllm.errors.CancelledError``, on every vendor, from async code and from
another thread; and the bridge's ``StreamRun.stop`` that this rests on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from reactivex import Observable
from reactivex.abc import DisposableBase
from reactivex.scheduler.eventloop import AsyncIOScheduler

import rxllm
from rxllm import TokenEvent, errors, from_async_iterable
from rxllm.bridge import StreamRun, current_stream
from rxllm.emulator import Emulator
from rxllm.events import DoneEvent, StreamEvent
from rxllm.provider import Provider

from .operators.emulated import NAMES, build, model, text_of
from .sources import wait_until_set
from .test_bridge import RecordingObserver

# Only a guard against a hang: a closed stream ends at once, and no timing is asserted.
SAFETY = 10

# A reply long and slow enough (2000 words at 50 tokens/s) to be mid-stream when closed.
SLOW = {"tps": 50, "words": 2000}


class Lane:
    """One subscription on the running loop: its events, and how it ended."""

    def __init__(self, stream: Observable[StreamEvent]) -> None:
        loop = asyncio.get_running_loop()
        self.events: list[StreamEvent] = []
        self.first_token = asyncio.Event()
        self.ended: asyncio.Future[Exception | None] = loop.create_future()
        self.subscription: DisposableBase = stream.subscribe(
            self._on_next,
            lambda error: self._end(error),
            lambda: self._end(None),
            scheduler=AsyncIOScheduler(loop),
        )

    def _on_next(self, event: StreamEvent) -> None:
        self.events.append(event)
        if isinstance(event, TokenEvent):
            self.first_token.set()

    def _end(self, error: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(error)

    async def error(self) -> Exception | None:
        return await asyncio.wait_for(asyncio.shield(self.ended), SAFETY)


def assert_closed_by_the_provider(error: Exception | None, name: str) -> None:
    assert isinstance(error, errors.CancelledError), repr(error)
    assert "provider was closed" in str(error)
    assert error.provider == name


# -- the provider's aclose() and close() -----------------------------------------------------


@pytest.fixture
async def provider(name: str, emulator: Emulator) -> AsyncIterator[Provider[Any]]:
    """The provider ``name`` on the emulator, closed again after the test (closing twice
    is fine: each test closes it once itself)."""
    built = build(name, emulator)
    yield built
    await built.aclose()


@pytest.mark.parametrize("name", NAMES)
async def test_closing_a_provider_mid_stream_ends_the_stream_with_cancelled_and_closes_it(
    name: str, emulator: Emulator, provider: Provider[Any]
) -> None:
    lane = Lane(provider.stream("Hi", model=model(name, **SLOW)))
    await asyncio.wait_for(lane.first_token.wait(), SAFETY)

    await asyncio.wait_for(provider.aclose(), SAFETY)

    assert_closed_by_the_provider(await lane.error(), name)
    assert text_of(lane.events)
    assert not any(isinstance(e, DoneEvent) for e in lane.events)
    (request,) = await emulator.wait_for_disconnects_async(1)
    assert not request.completed


@pytest.mark.parametrize("name", NAMES)
async def test_closing_mid_stream_twenty_times_never_hangs_nor_raises_a_raw_error(
    name: str, emulator: Emulator, provider: Provider[Any]
) -> None:
    # Gemini hung (or raised a bare AssertionError/RuntimeError) in 13 of 20 such closes.
    for attempt in range(1, 21):
        lane = Lane(provider.stream("Hi", model=model(name, **SLOW)))
        await asyncio.wait_for(lane.first_token.wait(), SAFETY)

        await asyncio.wait_for(provider.aclose(), SAFETY)

        assert_closed_by_the_provider(await lane.error(), name)
        await emulator.wait_for_disconnects_async(attempt)
    assert len(emulator.disconnects) == len(emulator.requests) == 20


@pytest.mark.parametrize("name", NAMES)
async def test_closing_while_the_request_is_being_sent_ends_the_stream_with_cancelled(
    name: str, emulator: Emulator, provider: Provider[Any]
) -> None:
    # Gemini's own session closed under a request being sent: aiohttp's bare
    # ``assert self._connector is not None``.
    lane = Lane(provider.stream("Hi", model=model(name, **SLOW)))
    await asyncio.sleep(0)  # the stream has started and holds the client

    await asyncio.wait_for(provider.aclose(), SAFETY)

    assert_closed_by_the_provider(await lane.error(), name)
    assert lane.events == []
    # Whatever reached the emulator saw its client go away.
    assert await asyncio.to_thread(emulator.wait_for_idle, SAFETY)
    assert all(r.disconnected for r in emulator.requests)


@pytest.mark.parametrize("name", NAMES)
async def test_closing_stops_every_running_stream_and_spares_finished_ones(
    name: str, emulator: Emulator, provider: Provider[Any]
) -> None:
    finished = await rxllm.collect(provider.stream("Hi", model=model(name)))
    lanes = [Lane(provider.stream("Hi", model=model(name, **SLOW))) for _ in range(3)]
    for lane in lanes:
        await asyncio.wait_for(lane.first_token.wait(), SAFETY)

    await asyncio.wait_for(provider.aclose(), SAFETY)

    for lane in lanes:
        assert_closed_by_the_provider(await lane.error(), name)
    assert finished.text
    assert len(await emulator.wait_for_disconnects_async(3)) == 3
    assert sum(r.completed for r in emulator.requests) == 1


@pytest.mark.parametrize("name", NAMES)
async def test_a_closed_provider_streams_again_on_a_new_client(
    name: str, emulator: Emulator, provider: Provider[Any]
) -> None:
    lane = Lane(provider.stream("Hi", model=model(name, **SLOW)))
    await asyncio.wait_for(lane.first_token.wait(), SAFETY)
    await asyncio.wait_for(provider.aclose(), SAFETY)
    assert_closed_by_the_provider(await lane.error(), name)

    result = await asyncio.wait_for(rxllm.collect(provider.stream("Hi", model=model(name))), SAFETY)

    assert result.text


@pytest.mark.parametrize("name", NAMES)
async def test_aclose_stops_streams_on_rxllms_background_loop_too(
    name: str, emulator: Emulator, provider: Provider[Any]
) -> None:
    # One provider, two loops: a stream on this loop and a blocking iterate on rxllm's
    # background loop. One aclose() stops both, each on its own loop.
    lane = Lane(provider.stream("Hi", model=model(name, **SLOW)))
    blocking = rxllm.iterate(provider.stream("Hi", model=model(name, **SLOW)))
    first = await asyncio.wait_for(asyncio.to_thread(next, blocking), SAFETY)
    await asyncio.wait_for(lane.first_token.wait(), SAFETY)

    await asyncio.wait_for(provider.aclose(), SAFETY)

    assert_closed_by_the_provider(await lane.error(), name)
    with pytest.raises(errors.CancelledError, match="provider was closed"):
        await asyncio.wait_for(asyncio.to_thread(list, blocking), SAFETY)
    assert isinstance(first, StreamEvent)
    assert len(await emulator.wait_for_disconnects_async(2)) == 2


@pytest.mark.parametrize("name", NAMES)
def test_close_from_another_thread_ends_a_blocking_iterate_with_cancelled(
    name: str, emulator_thread: Emulator
) -> None:
    provider = build(name, emulator_thread)
    first_token = threading.Event()
    closing = threading.Thread(
        target=lambda: first_token.wait(SAFETY) and provider.close(), name="closer"
    )
    closing.start()
    seen: list[StreamEvent] = []

    def consume(events: Iterator[StreamEvent]) -> None:
        for event in events:
            seen.append(event)
            first_token.set()

    try:
        stream = provider.stream("Hi", model=model(name, **SLOW))
        with pytest.raises(errors.CancelledError, match="provider was closed") as raised:
            consume(rxllm.iterate(stream))
        closing.join(SAFETY)

        assert not closing.is_alive()
        assert raised.value.provider == name
        assert text_of(seen)
        (request,) = emulator_thread.wait_for_disconnects(1)
        assert not request.completed
    finally:
        first_token.set()
        closing.join(SAFETY)
        provider.close()


async def test_close_from_the_loop_it_would_block_is_refused_and_closes_nothing(
    emulator: Emulator,
) -> None:
    provider = build("gemini", emulator)
    try:
        lane = Lane(provider.stream("Hi", model=model("gemini", **SLOW)))
        await asyncio.wait_for(lane.first_token.wait(), SAFETY)

        with pytest.raises(RuntimeError, match="await aclose"):
            provider.close()

        assert not lane.ended.done()
        await asyncio.wait_for(provider.aclose(), SAFETY)
        assert_closed_by_the_provider(await lane.error(), "gemini")
    finally:
        await provider.aclose()


# -- the bridge: StreamRun.stop -------------------------------------------------------------


class StoppableSource:
    """Yields one token, then waits forever; records its run and its cleanup."""

    def __init__(self, cleanup_delay: float = 0.0) -> None:
        self.runs: list[StreamRun | None] = []
        self.cleanup_delay = cleanup_delay
        self.cleaned_up = threading.Event()

    async def __call__(self) -> AsyncIterator[StreamEvent]:
        self.runs.append(current_stream())
        try:
            yield TokenEvent("a")
            await asyncio.Event().wait()
        finally:
            # An awaiting cleanup (closing a response) runs to its end.
            await asyncio.sleep(self.cleanup_delay)
            self.cleaned_up.set()


async def test_stopping_a_run_closes_its_iterator_then_delivers_that_error() -> None:
    source = StoppableSource(cleanup_delay=0.01)
    observer = RecordingObserver()
    cancelling_when_told: list[int] = []

    def on_error(error: Exception) -> None:
        task = asyncio.current_task()
        cancelling_when_told.append(task.cancelling() if task else -1)
        observer.on_error(error)

    from_async_iterable(source).subscribe(observer.on_next, on_error, observer.on_completed)
    await wait_until_set(observer.first)
    (run,) = source.runs
    assert run is not None
    stop = errors.CancelledError("stopped by the test")

    run.stop(stop)
    await wait_until_set(observer.ended)

    assert observer.errors == [stop]
    assert source.cleaned_up.is_set(), "the error came before the cleanup finished"
    assert cancelling_when_told == [0], "the stop's cancellation was left pending"
    await asyncio.wait_for(run.wait(), SAFETY)
    assert run.done


def test_a_run_can_be_stopped_from_another_thread() -> None:
    source = StoppableSource()
    observer = RecordingObserver()
    observer.subscribe_to(from_async_iterable(source))  # on rxllm's background loop
    assert observer.first.wait(SAFETY)
    (run,) = source.runs
    assert run is not None

    run.stop(errors.CancelledError("stopped from another thread"))

    assert observer.ended.wait(SAFETY)
    assert [str(e) for e in observer.errors] == ["stopped from another thread"]
    assert source.cleaned_up.is_set()


async def test_a_stop_after_the_end_or_a_dispose_changes_nothing() -> None:
    runs: list[StreamRun | None] = []

    async def short() -> AsyncIterator[StreamEvent]:
        runs.append(current_stream())
        yield TokenEvent("a")

    observer = RecordingObserver()
    observer.subscribe_to(from_async_iterable(short))
    await wait_until_set(observer.ended)
    (run,) = runs
    assert run is not None
    await asyncio.wait_for(run.wait(), SAFETY)
    run.stop(errors.CancelledError("too late"))
    assert observer.errors == []
    assert observer.completed == 1

    source = StoppableSource()
    disposed = RecordingObserver()
    subscription = disposed.subscribe_to(from_async_iterable(source))
    await wait_until_set(disposed.first)
    subscription.dispose()
    (stopped_run,) = source.runs
    assert stopped_run is not None
    stopped_run.stop(errors.CancelledError("after dispose"))
    await wait_until_set(source.cleaned_up)
    await asyncio.wait_for(stopped_run.wait(), SAFETY)
    assert disposed.errors == []
    assert disposed.completed == 0


async def test_current_stream_is_none_outside_a_bridged_run() -> None:
    async def in_a_task() -> StreamRun | None:
        return current_stream()

    assert current_stream() is None
    assert await asyncio.create_task(in_a_task()) is None

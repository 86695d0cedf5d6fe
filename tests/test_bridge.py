"""The bridge: a cold Observable over a factory of async iterators, with real cancellation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from reactivex import operators as ops

import rxllm
from rxllm import TokenEvent, errors, from_async_iterable
from rxllm.bridge import Demand, background_loop, demand_scope

from .sources import EventSource, done, reply, wait_until_set


class RecordingObserver:
    """Records every notification, with the thread it arrived on."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.errors: list[Exception] = []
        self.completed = 0
        self.after_end: list[str] = []
        self.first = threading.Event()
        self.ended = threading.Event()

    def on_next(self, value: Any) -> None:
        if self.ended.is_set():
            self.after_end.append(f"on_next({value!r})")
        self.events.append(value)
        self.first.set()

    def on_error(self, error: Exception) -> None:
        if self.ended.is_set():
            self.after_end.append(f"on_error({error!r})")
        self.errors.append(error)
        self.ended.set()

    def on_completed(self) -> None:
        if self.ended.is_set():
            self.after_end.append("on_completed()")
        self.completed += 1
        self.ended.set()

    def subscribe_to(self, observable: Any) -> Any:
        return observable.subscribe(self.on_next, self.on_error, self.on_completed)


# -- cold and lazy -------------------------------------------------------------------------


async def test_nothing_runs_until_subscribed() -> None:
    source = EventSource(reply("a"))
    from_async_iterable(source)
    await asyncio.sleep(0)
    assert source.record.starts == 0


async def test_every_subscription_calls_the_factory_afresh() -> None:
    source = EventSource(reply("a", "b"))
    observable = from_async_iterable(source)

    first = await rxllm.collect(observable)
    second = await rxllm.collect(observable)

    assert source.record.starts == 2
    assert first.text == second.text == "ab"


def test_every_blocking_subscription_calls_the_factory_afresh() -> None:
    source = EventSource(reply("a"))
    observable = from_async_iterable(source)

    rxllm.collect_sync(observable)
    rxllm.collect_sync(observable)

    assert source.record.starts == 2


# -- dispose cancels the upstream task -----------------------------------------------------


async def test_dispose_cancels_the_iterating_task_and_its_cleanup_runs() -> None:
    source = EventSource([TokenEvent("a")], hang=True)
    observer = RecordingObserver()
    subscription = observer.subscribe_to(from_async_iterable(source))
    await wait_until_set(observer.first)

    subscription.dispose()
    await wait_until_set(source.record.finished)

    assert source.record.cancelled, "the task was not cancelled: genai/xai would keep the socket"
    assert source.record.closed
    assert observer.events == [TokenEvent("a")]
    assert observer.errors == []
    assert observer.completed == 0


def test_dispose_from_sync_code_cancels_the_background_task() -> None:
    source = EventSource([TokenEvent("a")], hang=True)
    observer = RecordingObserver()
    subscription = observer.subscribe_to(from_async_iterable(source))
    assert observer.first.wait(10)

    subscription.dispose()

    assert source.record.finished.wait(10)
    assert source.record.cancelled
    assert observer.errors == []
    assert observer.completed == 0


async def test_dispose_while_waiting_for_demand_still_closes_the_iterator() -> None:
    source = EventSource(reply("a", "b", "c"))
    demand = Demand()
    observer = RecordingObserver()
    with demand_scope(demand):
        # A consumer that wants one event only: the bridge then waits before pulling again.
        subscription = from_async_iterable(source).subscribe(
            lambda event: (observer.on_next(event), demand.close()),
            observer.on_error,
            observer.on_completed,
        )
    await wait_until_set(observer.first)
    for _ in range(5):
        await asyncio.sleep(0)
    assert source.record.pulled == 1

    subscription.dispose()
    await wait_until_set(source.record.finished)

    assert source.record.closed, "the iterator suspended at its yield was not closed"
    assert observer.events == [TokenEvent("a")]
    assert observer.completed == 0
    assert observer.errors == []


async def test_a_closed_demand_pauses_pulling_until_it_opens() -> None:
    source = EventSource(reply("a", "b"))
    demand = Demand()
    observer = RecordingObserver()
    demand.close()
    with demand_scope(demand):
        observer.subscribe_to(from_async_iterable(source))
    for _ in range(5):
        await asyncio.sleep(0)
    assert source.record.pulled == 0

    demand.open()
    await wait_until_set(observer.ended)

    assert [type(e).__name__ for e in observer.events] == ["TokenEvent", "TokenEvent", "DoneEvent"]


# -- errors --------------------------------------------------------------------------------


async def test_an_upstream_error_arrives_on_on_error_with_its_type_after_earlier_events() -> None:
    boom = errors.RateLimitedError("slow down", provider="test", retry_after=2.0)
    source = EventSource([TokenEvent("a")], error=boom)
    observer = RecordingObserver()
    observer.subscribe_to(from_async_iterable(source))
    await wait_until_set(observer.ended)

    assert observer.events == [TokenEvent("a")]
    assert observer.errors == [boom]
    assert isinstance(observer.errors[0], errors.RateLimitedError)
    assert observer.completed == 0
    assert source.record.closed


async def test_a_factory_that_raises_reports_on_on_error() -> None:
    def factory() -> Any:
        raise errors.AuthenticationError("bad key", provider="test")

    observer = RecordingObserver()
    observer.subscribe_to(from_async_iterable(factory))
    await wait_until_set(observer.ended)

    assert len(observer.errors) == 1
    assert isinstance(observer.errors[0], errors.AuthenticationError)


async def test_an_error_reaches_await_collect_with_its_type() -> None:
    source = EventSource([TokenEvent("a")], error=errors.ServerError("down", status=500))
    with pytest.raises(errors.ServerError, match="down"):
        await rxllm.collect(from_async_iterable(source))


def test_an_error_reaches_collect_sync_with_its_type() -> None:
    source = EventSource([TokenEvent("a")], error=errors.OverloadedError("busy", status=529))
    with pytest.raises(errors.OverloadedError):
        rxllm.collect_sync(from_async_iterable(source))


async def test_a_task_cancelled_by_someone_else_ends_the_stream_with_cancelled() -> None:
    source = EventSource([TokenEvent("a")], hang=True)
    observer = RecordingObserver()
    observer.subscribe_to(from_async_iterable(source))
    await wait_until_set(observer.first)

    # As when the loop shuts down: the task is cancelled, not the subscription disposed.
    (task,) = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    task.cancel()
    await wait_until_set(observer.ended)

    assert len(observer.errors) == 1
    assert isinstance(observer.errors[0], errors.CancelledError)
    assert source.record.cancelled
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nothing_is_emitted_after_completion() -> None:
    observer = RecordingObserver()
    observer.subscribe_to(from_async_iterable(EventSource(reply("a"))))
    await wait_until_set(observer.ended)
    for _ in range(5):
        await asyncio.sleep(0)

    assert observer.completed == 1
    assert observer.after_end == []


async def test_nothing_is_emitted_after_an_error() -> None:
    source = EventSource([], error=errors.ServerError("down"))
    observer = RecordingObserver()
    observer.subscribe_to(from_async_iterable(source))
    await wait_until_set(observer.ended)
    for _ in range(5):
        await asyncio.sleep(0)

    assert len(observer.errors) == 1
    assert observer.after_end == []


# -- where the work runs -------------------------------------------------------------------


async def test_in_async_code_the_stream_runs_on_the_running_loop() -> None:
    source = EventSource(reply("a"))
    await rxllm.collect(from_async_iterable(source))

    assert source.record.loops == [asyncio.get_running_loop()]
    assert source.record.threads == [threading.current_thread()]


def test_in_sync_code_every_stream_runs_on_the_one_private_background_thread() -> None:
    source = EventSource(reply("a"))
    observable = from_async_iterable(source)

    rxllm.collect_sync(observable)
    assert observable.pipe(ops.to_list()).run()[-1] == done()
    observer = RecordingObserver()
    observer.subscribe_to(observable)
    assert observer.ended.wait(10)

    threads = source.record.threads
    assert len(threads) == 3
    assert threads[0] is not threading.main_thread()
    assert all(thread is threads[0] for thread in threads)
    assert source.record.loops == [background_loop()] * 3


class SlowClosingIterator:
    """Fails on its second pull; its ``aclose`` needs a few loop turns (like closing a socket)."""

    def __init__(self) -> None:
        self.pulls = 0
        self.close_finished = False

    def __aiter__(self) -> SlowClosingIterator:
        return self

    async def __anext__(self) -> TokenEvent:
        self.pulls += 1
        if self.pulls > 1:
            raise errors.StreamInterruptedError("connection dropped")
        return TokenEvent("a")

    async def aclose(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        self.close_finished = True


async def test_the_iterator_is_closed_completely_before_the_error_is_delivered() -> None:
    iterator = SlowClosingIterator()
    observer = RecordingObserver()
    closed_when_error_arrived: list[bool] = []
    from_async_iterable(lambda: iterator).subscribe(
        observer.on_next,
        lambda error: (
            closed_when_error_arrived.append(iterator.close_finished),
            observer.on_error(error),
        ),
    )
    await wait_until_set(observer.ended)
    for _ in range(5):
        await asyncio.sleep(0)

    assert closed_when_error_arrived == [True]
    assert iterator.close_finished


# -- cleanup that awaits runs to the end, however the subscription is disposed ---------------


class AwaitingCleanupSource:
    """Yields tokens (then waits forever); its ``finally`` awaits before it records the end."""

    def __init__(self, tokens: int = 3) -> None:
        self.tokens = tokens
        self.log: list[str] = []
        self.done = threading.Event()

    def __call__(self) -> Any:
        return self._run()

    async def _run(self) -> Any:
        try:
            for n in range(self.tokens):
                yield TokenEvent(str(n))
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.log.append("cancelled")
            raise
        finally:
            self.log.append("cleanup-start")
            await asyncio.sleep(0)  # as ``await response.aclose()`` would
            await asyncio.sleep(0)
            self.log.append("cleanup-done")
            self.done.set()


async def test_dispose_from_inside_on_next_lets_an_awaiting_cleanup_finish() -> None:
    source = AwaitingCleanupSource()
    # take(1) disposes its upstream synchronously inside on_next, on the bridge's own task.
    first = await from_async_iterable(source).pipe(ops.take(1), ops.to_list())

    await wait_until_set(source.done)
    assert first == [TokenEvent("0")]
    assert source.log == ["cleanup-start", "cleanup-done"]


async def test_dispose_from_outside_cancels_the_pull_and_lets_an_awaiting_cleanup_finish() -> None:
    source = AwaitingCleanupSource(tokens=1)
    observer = RecordingObserver()
    subscription = observer.subscribe_to(from_async_iterable(source))
    await wait_until_set(observer.first)
    for _ in range(3):
        await asyncio.sleep(0)

    subscription.dispose()
    await wait_until_set(source.done)

    assert source.log == ["cancelled", "cleanup-start", "cleanup-done"]
    assert observer.errors == []
    assert observer.completed == 0


class EndingSlowClosingIterator:
    """Ends after one event; its ``aclose`` needs a few loop turns (like closing a socket)."""

    def __init__(self) -> None:
        self.pulls = 0
        self.close_started = asyncio.Event()
        self.close_finished = False

    def __aiter__(self) -> EndingSlowClosingIterator:
        return self

    async def __anext__(self) -> TokenEvent:
        self.pulls += 1
        if self.pulls > 1:
            raise StopAsyncIteration
        return TokenEvent("a")

    async def aclose(self) -> None:
        self.close_started.set()
        for _ in range(3):
            await asyncio.sleep(0)
        self.close_finished = True


async def test_dispose_from_outside_while_the_iterator_closes_does_not_cut_the_close_short() -> (
    None
):
    iterator = EndingSlowClosingIterator()
    observer = RecordingObserver()
    subscription = observer.subscribe_to(from_async_iterable(lambda: iterator))
    await iterator.close_started.wait()

    subscription.dispose()
    for _ in range(10):
        await asyncio.sleep(0)

    assert iterator.close_finished
    assert observer.completed == 0
    assert observer.errors == []


def test_dispose_from_another_thread_during_on_next_lets_an_awaiting_cleanup_finish() -> None:
    source = AwaitingCleanupSource()
    in_on_next = threading.Event()
    release = threading.Event()

    def on_next(event: Any) -> None:
        if not in_on_next.is_set():
            in_on_next.set()
            assert release.wait(10)

    subscription = from_async_iterable(source).subscribe(on_next)
    assert in_on_next.wait(10)
    subscription.dispose()  # from the main thread, while the loop thread is inside on_next
    release.set()

    assert source.done.wait(10)
    assert source.log == ["cleanup-start", "cleanup-done"]

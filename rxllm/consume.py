"""Consuming a stream: ``await``, ``async for``, and blocking forms for scripts.

Every helper here subscribes to a cold ``Observable[StreamEvent]``, so each
call is one run of the stream (one request, for a provider's stream):

- :func:`collect` / :func:`collect_sync` fold a whole stream into a
  :class:`~rxllm.result.StreamResult`;
- :func:`aiter` / :func:`iterate` hand events over one at a time through a
  bounded buffer. While the buffer is full, rxllm's bridge stops pulling from
  the provider's iterator, so the network read pauses and memory stays flat
  under a slow consumer.

The async forms run the stream on the running event loop; the blocking forms
run it on rxllm's private background loop thread, from any thread that runs no
event loop. On a thread that does (a Jupyter cell, a coroutine) they raise
:class:`~rxllm.bridge.BlockingCallInEventLoopError` at once, naming the async
form: blocking there would stop the very loop the stream may need (the emulator
that ``await rxllm.connect(...)`` starts, an SDK client made on that loop), and
the call would never return.

When the connection closes: at the stream's end, or as soon as Python says the
consumer is done with the iterator: ``close()``/``aclose()``, leaving its
``with``/``async with`` block, or the iterator being garbage-collected (which,
in CPython, is at once when a ``for`` loop that alone held it is left by
``break``, ``return`` or an exception). Python says nothing when a loop is left
while the iterator is still referenced (``it = iterate(s); for e in it: break``):
until one of the above, that request stays open, its read paused once
``buffer`` events wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Final

from reactivex import Observable, abc
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

from .bridge import Demand, background_loop, demand_scope, refuse_blocking_on_loop_thread
from .events import StreamEvent
from .result import StreamResult

__all__ = ["aiter", "collect", "collect_sync", "iterate"]

_DEFAULT_BUFFER: Final = 64


class _Completed:
    """The end-of-stream marker in a channel."""


_COMPLETED: Final = _Completed()


class _Channel:
    """Events pushed by a subscription (any thread), taken by one consumer.

    Holds the :class:`Demand` the subscription was made under: it closes the
    demand when ``size`` events wait unconsumed and opens it again when the
    consumer takes one, so the bridge never pulls more than ``size`` ahead.

    The channel must not refer to the iterator that owns it: the subscription
    (kept alive by its running task) refers to the channel, and the iterator has
    to be collectable while the stream runs so that dropping it disposes.
    """

    def __init__(self, size: int) -> None:
        self.demand = Demand()
        self._size = size
        self._events: deque[StreamEvent] = deque()
        self._end: _Completed | Exception | None = None
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        # The async consumer's pending wait, if any: resolved on its own loop.
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    # -- the subscription's side ------------------------------------------------------

    def on_next(self, event: StreamEvent) -> None:
        with self._lock:
            if self._end is not None:
                return
            self._events.append(event)
            if len(self._events) >= self._size:
                self.demand.close()
            self._wake()

    def on_error(self, error: Exception) -> None:
        self._finish(error)

    def on_completed(self) -> None:
        self._finish(_COMPLETED)

    def close(self) -> None:
        """The consumer is done: a ``take`` waiting (in another thread or task) ends."""
        self._finish(_COMPLETED)

    def _finish(self, end: _Completed | Exception) -> None:
        with self._lock:
            if self._end is None:
                self._end = end
            self._wake()

    def _wake(self) -> None:
        # Called with the lock held.
        self._ready.notify_all()
        if self._waiter is not None:
            loop, future = self._waiter
            self._waiter = None
            if _running_loop() is loop:
                _resolve(future)
            else:
                loop.call_soon_threadsafe(_resolve, future)

    # -- the consumer's side ----------------------------------------------------------

    def _take_locked(self) -> StreamEvent | _Completed | Exception | None:
        """The next event, or how the stream ended, or ``None`` (nothing yet)."""
        if self._events:
            event = self._events.popleft()
            if len(self._events) == self._size - 1:
                self.demand.open()
            return event
        return self._end

    def take_blocking(self) -> StreamEvent | _Completed | Exception:
        with self._lock:
            while True:
                item = self._take_locked()
                if item is not None:
                    return item
                self._ready.wait()

    async def take(self) -> StreamEvent | _Completed | Exception:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                item = self._take_locked()
                if item is not None:
                    return item
                future: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, future)
            await future


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _check_buffer(buffer: int) -> int:
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ValueError(f"buffer must be an int >= 1, got {buffer!r}")
    return buffer


def _subscribe(
    observable: Observable[StreamEvent],
    channel: _Channel,
    scheduler: abc.SchedulerBase | None = None,
) -> abc.DisposableBase:
    with demand_scope(channel.demand):
        return observable.subscribe(
            on_next=channel.on_next,
            on_error=channel.on_error,
            on_completed=channel.on_completed,
            scheduler=scheduler,
        )


class EventIterator(AsyncIterator[StreamEvent]):
    """What :func:`aiter` returns: an async iterator over one run of a stream.

    The stream is subscribed on the first ``__anext__``. ``aclose()``, leaving an
    ``async with`` block, or dropping the iterator (breaking out of
    ``async for``) disposes the subscription, which cancels the upstream task.
    """

    def __init__(self, observable: Observable[StreamEvent], buffer: int) -> None:
        self._observable = observable
        self._channel = _Channel(buffer)
        self._subscription: abc.DisposableBase | None = None
        self._finished = False

    def __aiter__(self) -> EventIterator:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._finished:
            raise StopAsyncIteration
        if self._subscription is None:
            self._subscription = _subscribe(self._observable, self._channel)
        item = await self._channel.take()
        if isinstance(item, _Completed):
            self._finished = True
            raise StopAsyncIteration
        if isinstance(item, Exception):
            self._finished = True
            raise item
        return item

    async def aclose(self) -> None:
        """Stop: dispose the subscription (cancelling the upstream task)."""
        self._close()

    async def __aenter__(self) -> EventIterator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        self._dispose()
        # A disposed subscription says nothing more: wake a consumer still waiting.
        self._channel.close()

    def _dispose(self) -> None:
        self._finished = True
        if self._subscription is not None:
            self._subscription.dispose()

    def __del__(self) -> None:
        # Breaking out of ``async for`` drops the iterator without calling aclose().
        # Disposing is synchronous, thread-safe and never blocks, so do it here; not the
        # channel's lock, which this thread may hold (nobody waits on a dropped iterator).
        with contextlib.suppress(Exception):
            self._dispose()


class BlockingEventIterator(Iterator[StreamEvent]):
    """What :func:`iterate` returns: a blocking iterator over one run of a stream.

    The stream runs on rxllm's private background loop and is subscribed on the
    first ``next()``. ``close()``, leaving a ``with`` block, or the iterator being
    garbage-collected (breaking out of a ``for`` that alone held it) disposes the
    subscription, which closes the connection. ``close()`` may come from another
    thread: a ``next()`` waiting there ends with ``StopIteration``.
    """

    def __init__(self, observable: Observable[StreamEvent], buffer: int) -> None:
        self._observable = observable
        self._channel = _Channel(buffer)
        self._subscription: abc.DisposableBase | None = None
        self._finished = False

    def __iter__(self) -> BlockingEventIterator:
        return self

    def __next__(self) -> StreamEvent:
        if self._finished:
            raise StopIteration
        # Checked at each wait, not when built: an iterator made in async code may be
        # handed to a worker thread (``asyncio.to_thread(next, events)``).
        refuse_blocking_on_loop_thread(
            "next() on rxllm.iterate()", "`async for event in rxllm.aiter(stream)`"
        )
        if self._subscription is None:
            # Never the caller's loop, even from a thread with none: the subscription
            # must not depend on where ``next()`` happens to be called.
            scheduler = AsyncIOThreadSafeScheduler(background_loop())
            self._subscription = _subscribe(self._observable, self._channel, scheduler)
        item = self._channel.take_blocking()
        if isinstance(item, _Completed):
            self._finished = True
            raise StopIteration
        if isinstance(item, Exception):
            self._finished = True
            raise item
        return item

    def close(self) -> None:
        """Stop: dispose the subscription, which cancels the request and closes its
        connection. Never blocks; closing twice does nothing more."""
        self._dispose()
        # A disposed subscription says nothing more: wake a next() still waiting.
        self._channel.close()

    def _dispose(self) -> None:
        self._finished = True
        if self._subscription is not None:
            self._subscription.dispose()

    def __enter__(self) -> BlockingEventIterator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # The only word Python gives when a ``for`` loop that held the iterator is left
        # (break, return, an exception) or the last reference goes. Disposing only
        # schedules the cancellation on the background loop, so nothing here blocks; the
        # channel's lock is left alone (this thread may hold it, and nobody waits on a
        # dropped iterator).
        with contextlib.suppress(Exception):
            self._dispose()


def aiter(  # noqa: A001 - rxllm.aiter, the async twin of rxllm.iterate
    observable: Observable[StreamEvent], buffer: int = _DEFAULT_BUFFER
) -> EventIterator:
    """Iterate a stream's events with ``async for``, at most ``buffer`` events ahead.

    When ``buffer`` events wait unconsumed, rxllm's bridge stops pulling from the
    provider until the consumer takes one, so a slow consumer pauses the network
    read. (Operators that emit on their own schedule, such as time-based
    batching, buffer upstream of this.) An error on the stream is raised from the
    ``async for``; breaking out of the loop, or ``aclose()``, disposes the
    subscription and so cancels the request.

    Args:
        observable: The stream, e.g. ``provider.stream(request)``.
        buffer: How many events may wait unconsumed; at least 1.

    Returns:
        An async iterator of events; also an async context manager that closes it.

    Raises:
        ValueError: ``buffer`` is less than 1.

    Example:
        >>> async for event in rxllm.aiter(provider.stream("Hi"), buffer=16):
        ...     if isinstance(event, rxllm.TokenEvent):
        ...         print(event.text, end="")
    """
    return EventIterator(observable, _check_buffer(buffer))


def iterate(
    observable: Observable[StreamEvent], buffer: int = _DEFAULT_BUFFER
) -> BlockingEventIterator:
    """Iterate a stream's events with a blocking ``for``, for scripts.

    The stream runs on rxllm's private background loop thread; the same bounded
    buffer as :func:`aiter` applies. In async code or a Jupyter cell, use
    :func:`aiter`: ``next()`` on a thread that runs an event loop raises. The
    request is cancelled and its connection closed when the iterator is closed:
    ``close()``, leaving a ``with`` block, or garbage collection, which in CPython
    is at once when a ``for`` loop that alone held it is left
    (``for e in rxllm.iterate(s): break``). An iterator kept in a variable keeps
    its request open after ``break`` until one of those happens; use ``with`` for
    that.

    Args:
        observable: The stream, e.g. ``provider.stream(request)``.
        buffer: How many events may wait unconsumed; at least 1.

    Returns:
        An iterator of events; also a context manager that closes it.

    Raises:
        ValueError: ``buffer`` is less than 1.
        rxllm.bridge.BlockingCallInEventLoopError: ``next()`` was called on a
            thread that runs an event loop (use :func:`aiter` there).

    Example:
        >>> for event in rxllm.iterate(provider.stream("Hi")):
        ...     if isinstance(event, rxllm.TokenEvent):
        ...         print(event.text, end="")
        >>> with rxllm.iterate(provider.stream("Hi")) as events:
        ...     first = next(events)  # the connection closes as the block ends
    """
    return BlockingEventIterator(observable, _check_buffer(buffer))


async def collect(observable: Observable[StreamEvent]) -> StreamResult:
    """Run a stream to its end and return its text, reasoning, usage and finish reason.

    Args:
        observable: The stream, e.g. ``provider.stream(request)``.

    Returns:
        The collected :class:`~rxllm.result.StreamResult`.

    Raises:
        rxllm.errors.RxllmError: The stream failed (the error on the stream, or
            the first in-band ``ErrorEvent``).
        rxllm.errors.StreamInterruptedError: The stream completed without a ``done`` event.

    Example:
        >>> result = await rxllm.collect(provider.stream("Hi"))
        >>> result.text, result.usage.total_tokens
    """
    return StreamResult.from_events(await _gather(observable))


async def _gather(observable: Observable[StreamEvent]) -> list[StreamEvent]:
    """Every event of one run, folded in ``on_next`` on the calling loop.

    Not through :func:`aiter`'s channel: its lock, its wake-ups and a hop through the
    event loop per event were a quarter or more of the client CPU of a token (see
    ``bench/``), and a fold needs no backpressure (it keeps every event anyway).
    Cancelling the ``await`` disposes the subscription, which closes the connection.
    """
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    events: list[StreamEvent] = []

    def end(error: Exception | None) -> None:
        if ended.done():
            return
        if error is None:
            ended.set_result(None)
        else:
            ended.set_exception(error)

    def finish(error: Exception | None) -> None:
        # An operator with a scheduler of its own may end the stream on another thread.
        if _running_loop() is loop:
            end(error)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(end, error)

    subscription = observable.subscribe(_Folder(events.append, finish))
    try:
        await ended
    finally:
        subscription.dispose()  # after the end: nothing; cancelled: closes the connection
    return events


class _Folder(abc.ObserverBase[StreamEvent]):
    """The observer of :func:`_gather`: ``on_next`` is the list's own ``append`` (no
    Python call of ours per event; the subscription's auto-detaching observer around it
    already drops what comes after the end)."""

    def __init__(
        self,
        append: Callable[[StreamEvent], None],
        finish: Callable[[Exception | None], None],
    ) -> None:
        self.on_next = append  # type: ignore[method-assign,assignment]
        self._finish = finish

    def on_next(self, value: StreamEvent) -> None:  # replaced per instance (see above)
        raise NotImplementedError

    def on_error(self, error: Exception) -> None:
        self._finish(error)

    def on_completed(self) -> None:
        self._finish(None)


def collect_sync(observable: Observable[StreamEvent]) -> StreamResult:
    """Blocking :func:`collect`, for scripts: runs on rxllm's private background loop.

    In async code or a Jupyter cell, ``await rxllm.collect(...)`` instead: this
    raises at once on a thread that runs an event loop rather than block it.

    Args:
        observable: The stream, e.g. ``provider.stream(request)``.

    Returns:
        The collected :class:`~rxllm.result.StreamResult`.

    Raises:
        rxllm.errors.RxllmError: The stream failed (the error on the stream, or
            the first in-band ``ErrorEvent``).
        rxllm.errors.StreamInterruptedError: The stream completed without a ``done`` event.
        rxllm.bridge.BlockingCallInEventLoopError: Called on a thread that runs an
            event loop.

    Example:
        >>> print(rxllm.collect_sync(provider.stream("Hi")).text)
    """
    refuse_blocking_on_loop_thread("rxllm.collect_sync()", "`await rxllm.collect(stream)`")
    with iterate(observable) as events:
        return StreamResult.from_events(list(events))

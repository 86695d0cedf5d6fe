"""The bridge: a cold ``Observable`` over a factory of async iterators.

RxPY has no source for an async iterator; this is rxllm's. Each subscription
calls the factory afresh and iterates it in an asyncio task:

- in a running event loop (asyncio programs, Jupyter), on that loop (or on the
  loop of an ``AsyncIOScheduler`` passed to ``subscribe``);
- in plain synchronous code, on one private background loop thread shared by
  the whole process.

Disposing the subscription while the task waits on the iterator **cancels that
task**, so the iterator's cleanup (``finally`` blocks, ``aclose``) runs inside a
cancelled task. That matters: google-genai and xai-sdk close their connection
only when the iterating task is cancelled; breaking out of the loop leaves it
open. The cancellation is delivered at that wait only, so cleanup that awaits
(closing a response) runs to its end. Disposing from inside ``on_next`` (as
``take_tokens`` does) or while the cleanup already runs cancels nothing: the
task stops pulling and closes the iterator.

Pulling consumers (``rxllm.aiter``) may install a :class:`Demand` while they
subscribe; the bridge then waits for room before each pull from the upstream
iterator, so a slow consumer pauses the network read instead of buffering.

The code being iterated can find its own run with :func:`current_stream` and
keep it; :meth:`StreamRun.stop` ends that run with an error of its choosing, the
same way a dispose ends it (cancelled at its wait, cleanup to its end) except
that the observer hears the error. A provider does this when it is closed while
its streams run: their connections close and they end with ``CancelledError``.

Blocking consumers never wait on the thread of a running event loop: the stream
may need that very loop (an emulator or an SDK client living on it), so blocking
there would hang for good. ``Observable.run()`` on a bridged stream, and rxllm's
blocking helpers (:func:`refuse_blocking_on_loop_thread`), raise
:class:`BlockingCallInEventLoopError` at once instead, naming the async form.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .errors import CancelledError

__all__ = [
    "BlockingCallInEventLoopError",
    "Demand",
    "StreamRun",
    "background_loop",
    "current_stream",
    "demand_scope",
    "from_async_batches",
    "from_async_iterable",
    "refuse_blocking_on_loop_thread",
    "subscriber",
]

_T = TypeVar("_T")


class BlockingCallInEventLoopError(RuntimeError):
    """A blocking call was made on a thread that runs an event loop.

    Waiting there would stop that loop, and a stream that needs it (the emulator
    ``await rxllm.connect(...)`` starts in Jupyter, an SDK client made on it)
    would never end. The message names the async form to use instead.
    """


def refuse_blocking_on_loop_thread(call: str, instead: str) -> None:
    """Raise :class:`BlockingCallInEventLoopError` if this thread runs an event loop.

    Args:
        call: what was called, e.g. ``"rxllm.collect_sync()"``.
        instead: the async form to use, e.g. ``"await rxllm.collect(stream)"``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise BlockingCallInEventLoopError(
        f"{call} blocks, and this thread runs an event loop (a Jupyter cell, async code) "
        f"that the stream may need, so it would never return: use {instead} instead"
    )


# The scheduler ``Observable.run()`` subscribes with when given none: how the bridge
# tells a blocking ``run()`` from other subscriptions. RxPY keeps it private.
_BLOCKING_RUN_SCHEDULER: object = getattr(
    importlib.import_module("reactivex.run"), "_default_scheduler", None
)


class Demand:
    """A gate a pulling consumer opens and closes; the bridge pulls only while it is open.

    Thread-safe: ``close``/``open`` may be called from any thread; ``wait`` runs
    on the bridge's loop.
    """

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        with self._lock:
            self._open.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        """Return when the gate is open."""
        while not self._open.is_set():
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                if self._open.is_set():
                    return
                self._waiters.append((loop, future))
            await future


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class StreamRun:
    """One subscription's run of a bridged stream, as the code it iterates sees it.

    Get it with :func:`current_stream` from inside the iterator. It outlives
    nothing: once the run ended, :meth:`stop` does nothing and :attr:`done` is true.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        stop: Callable[[Exception], None],
    ) -> None:
        self.loop = loop
        """The event loop the run iterates on."""
        self._task = task
        self._stop = stop

    @property
    def done(self) -> bool:
        """Whether the run ended, its cleanup included."""
        return self._task.done()

    def add_done_callback(self, callback: Callable[[StreamRun], None]) -> None:
        """Call ``callback(run)`` on the run's loop once it ended. Call this on that loop."""
        self._task.add_done_callback(lambda _: callback(self))

    def stop(self, error: Exception) -> None:
        """End the run with ``error`` on its observer, after its iterator was closed.

        Thread-safe. A run already ending (completed, failed, disposed, or stopped
        before) keeps its own end.
        """
        if _is_loop_thread(self.loop):
            self._stop(error)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.loop.call_soon_threadsafe(self._stop, error)

    async def wait(self) -> None:
        """Return when the run ended, its cleanup included. Await it on the run's loop."""
        if not self._task.done():
            await asyncio.wait({self._task})


# Every running pump, by its task: the loop keeps only weak references to tasks (a
# subscriber that drops its disposable must not see its stream garbage-collected
# mid-flight), and ``current_stream`` looks its run up here.
_runs: dict[asyncio.Task[Any], StreamRun] = {}


def current_stream() -> StreamRun | None:
    """The bridged run iterating in the current task, or ``None`` outside one."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return None
    return _runs.get(task) if task is not None else None


_current_demand: ContextVar[Demand | None] = ContextVar("rxllm_demand", default=None)


@contextlib.contextmanager
def demand_scope(demand: Demand) -> Iterator[None]:
    """Subscriptions made inside this block pull only while ``demand`` is open."""
    token = _current_demand.set(demand)
    try:
        yield
    finally:
        _current_demand.reset(token)


class _BackgroundLoop:
    """One private event loop on a daemon thread, for subscriptions made outside any loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="rxllm-loop", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop


_background = _BackgroundLoop()


def background_loop() -> asyncio.AbstractEventLoop:
    """rxllm's private loop for synchronous callers (started on first use)."""
    return _background.get()


def _target_loop(scheduler: abc.SchedulerBase | None) -> asyncio.AbstractEventLoop:
    if isinstance(scheduler, AsyncIOScheduler):
        return scheduler._loop  # RxPY exposes no accessor
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return background_loop()


def from_async_iterable(factory: Callable[[], AsyncIterator[_T]]) -> reactivex.Observable[_T]:
    """A cold Observable that iterates ``factory()`` afresh for every subscription.

    Example:
        >>> async def numbers():
        ...     for n in range(3):
        ...         yield n
        >>> from_async_iterable(numbers).pipe(ops.to_list()).run()
        [0, 1, 2]
    """
    return reactivex.create(subscriber(factory, batched=False))


def from_async_batches(
    factory: Callable[[], AsyncIterator[Sequence[_T]]],
) -> reactivex.Observable[_T]:
    """A cold Observable of the items of the batches ``factory()`` yields, in order.

    What a provider hands over: the events of one network read at a time, so the
    await (and the generators above it) is paid per read, not per event; the items of
    a batch are emitted in a tight loop. A dispose or stop between two items of a batch
    ends the run before the next one, and a :class:`Demand` is waited for before each
    item, so a pulling consumer never holds more than it asked for (the rest of the
    batch waits here, and the next read is not made).

    Example:
        >>> async def reads():
        ...     yield [1, 2]
        ...     yield [3]
        >>> from_async_batches(reads).pipe(ops.to_list()).run()
        [1, 2, 3]
    """
    return reactivex.create(subscriber(factory, batched=True))


def subscriber(
    factory: Callable[[], AsyncIterator[Any]], *, batched: bool
) -> Callable[[abc.ObserverBase[Any], abc.SchedulerBase | None], abc.DisposableBase]:
    """The subscribe function of :func:`from_async_iterable` (``batched=False``) or
    :func:`from_async_batches`, for an ``Observable`` subclass to pass to
    ``Observable.__init__`` (no inner Observable: no second observer wrapped around the
    subscriber's, as ``LLMStream`` does)."""

    def subscribe(
        observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        if scheduler is not None and scheduler is _BLOCKING_RUN_SCHEDULER:
            refuse_blocking_on_loop_thread(
                "Observable.run()",
                "`await rxllm.collect(stream)` or `async for event in rxllm.aiter(stream)`",
            )
        loop = _target_loop(scheduler)
        demand = _current_demand.get()
        disposed = False
        # The pump's task, and whether it is suspended waiting for demand or the next
        # item: the only place a dispose may cancel it. Both are touched on the loop only.
        task: asyncio.Task[Any] | None = None
        pulling = False
        # Set by StreamRun.stop: the error the run ends with. ``ending``: the run left
        # its loop (to clean up), so a stop comes too late to change how it ends.
        stopped: Exception | None = None
        stop_cancelled = False
        ending = False

        def stop(error: Exception) -> None:
            # Runs on the loop (StreamRun.stop sees to it).
            nonlocal stopped, stop_cancelled
            if disposed or ending or stopped is not None:
                return
            stopped = error
            stop_cancelled = cancel_pull()

        async def pump() -> None:
            nonlocal task, ending, pulling
            task = asyncio.current_task()
            if task is not None:
                _runs[task] = StreamRun(loop, task, stop)
                task.add_done_callback(_forget_run)
            if disposed:  # disposed before the task first ran
                return
            iterator: AsyncIterator[Any] | None = None
            failure: Exception | None = None
            foreign_cancel: asyncio.CancelledError | None = None
            try:
                iterator = factory()
                step = iterator.__anext__
                on_next = observer.on_next
                # The per-item path, inlined (no coroutine per item): wait for demand, then
                # for the next item (or batch); ``pulling`` marks the only places a dispose
                # may cancel.
                while not disposed and stopped is None:
                    pulling = True
                    try:
                        if demand is not None and not demand.is_open:
                            await demand.wait()
                        item = await step()
                    except StopAsyncIteration:
                        break
                    finally:
                        pulling = False
                    if disposed:
                        return
                    if not batched:
                        on_next(item)
                        if disposed:
                            return
                        continue
                    if demand is None:  # nothing to wait for between two events
                        for one in item:
                            on_next(one)
                            if disposed or stopped is not None:
                                break
                        if disposed:
                            return
                        continue
                    for one in item:
                        if not demand.is_open:
                            pulling = True
                            try:
                                await demand.wait()
                            finally:
                                pulling = False
                            if disposed:
                                return
                        on_next(one)
                        if disposed:
                            return
                        if stopped is not None:
                            break
            except asyncio.CancelledError as cancel:
                if disposed:
                    raise
                if not stop_cancelled:
                    # Cancelled by someone other than our dispose or stop (the loop
                    # shutting down): the observer must still hear that the stream ended.
                    foreign_cancel = cancel
                    failure = CancelledError("the task iterating the stream was cancelled")
                    failure.__cause__ = cancel
            except Exception as error:  # every error goes to on_error, never swallowed
                failure = error
            finally:
                ending = True
                if stop_cancelled and task is not None and task.cancelling():
                    # Our own cancellation, handled: asyncio.timeout and TaskGroup in the
                    # cleanup (and whoever awaits this task) must not see it pending.
                    task.uncancel()
                # Clean up before telling the observer, so the cleanup has finished when
                # it hears the end. Nothing cancels this task from here on (see cancel_pull).
                aclose: Any = getattr(iterator, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()
            if disposed:
                return
            if stopped is not None and foreign_cancel is None:
                # Whatever the iterator made of the cancellation, the stop says why it ended.
                failure = stopped
            if failure is not None:
                observer.on_error(failure)
            else:
                observer.on_completed()
            if foreign_cancel is not None:
                raise foreign_cancel

        if _is_loop_thread(loop):
            loop.create_task(pump())
        else:
            asyncio.run_coroutine_threadsafe(pump(), loop)

        def cancel_pull() -> bool:
            # Runs on the loop, so the task is suspended (or is the caller, inside
            # on_next): cancel it only if it waits on the iterator. Elsewhere it sees
            # ``disposed`` (or ``stopped``) at its next step, and a cancellation would
            # cut its cleanup short.
            if pulling and task is not None:
                task.cancel()
                return True
            return False

        def dispose() -> None:
            nonlocal disposed
            if disposed:
                return
            disposed = True
            if _is_loop_thread(loop):
                cancel_pull()
            else:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(cancel_pull)

        return Disposable(dispose)

    return subscribe


def _forget_run(task: asyncio.Task[Any]) -> None:
    _runs.pop(task, None)


def _is_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

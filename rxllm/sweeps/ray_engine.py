"""``engine="ray"``: a sweep's rows spread over Ray workers, limits and budget cluster-wide.

The driver (the process that awaits the sweep) splits the rows to run into
one chunk per worker task; each task runs the local engine on its own event
loop, many streams at once. What must hold for the whole cluster lives in one
actor, the coordinator, so ten workers never send ten times the allowed rate:

- **rate limits**: before each attempt of each row, a worker awaits
  ``coordinator.acquire(provider, tokens)``; the actor holds one
  :class:`~rxllm.operators.RateLimiter` per limited provider (the configured
  limits, or ``rate_limits=``) and answers when it grants the request;
- **budget**: before each row a worker asks ``may_start``, sending its own
  in-flight estimate; the actor adds the finished rows' cost;
- **results**: a worker reports each finished row to the actor; the driver
  drains them a few times a second into the same SQLite store the local
  engine writes, so a rerun resumes the same way on either engine.

Workers build their providers from ``"provider:model"`` and base URL, with
keys from their own environment: give them as secrets of the runtime
environment (``ray.init(runtime_env={"env_vars": {...}})`` or
``ray_options={"runtime_env": ...}``), never in code or task arguments.
Cancelling the sweep cancels the tasks (their rows in flight are lost and
run again next time); rows already reported are stored first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .. import registry
from ..operators import RateLimiter, rate_limit
from ..provider import Provider
from ..request import StreamRequest
from .budget import Budget
from .engine import GateFor, RowRunner, WorkItem, gate, run_items, worker_name

__all__ = ["run_on_ray"]

_DRAIN_EVERY = 0.2  # seconds between the driver's collections of finished rows


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('engine="ray" needs Ray: pip install "rxllm[ray]"') from error
    return ray


class _Charge(Observable[Any]):
    """What the coordinator passes through a limiter: completes at once, costs ``tokens``."""

    def __init__(self, tokens: int) -> None:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            observer.on_completed()
            return Disposable()

        super().__init__(subscribe)
        self.tokens = tokens


class _ClusterLimiter(RateLimiter):
    """A :class:`RateLimiter` whose charges are estimated by the worker that asks."""

    def estimate(self, source: Observable[Any]) -> int:
        return source.tokens if isinstance(source, _Charge) else self.default_cost


class Coordinator:
    """The cluster-wide state of one sweep (run as an async Ray actor)."""

    def __init__(
        self,
        limits: dict[str, tuple[float | None, float | None]],
        max_cost: float | None,
        spent: float,
    ) -> None:
        self.limiters = {
            name: _ClusterLimiter(requests_per_minute=rpm, tokens_per_minute=tpm)
            for name, (rpm, tpm) in limits.items()
        }
        self.budget = Budget(max_cost, spent)
        self.in_flight: dict[str, float] = {}
        self.outbox: list[dict[str, Any]] = []
        self.askers: set[str] = set()
        self.granted = 0
        self.stopped = False

    async def acquire(self, provider: str, tokens: int, worker: str) -> None:
        """Return when ``provider``'s cluster-wide limit grants one request of ``tokens``."""
        self.askers.add(worker)
        limiter = self.limiters.get(provider)
        if limiter is not None:
            loop = asyncio.get_running_loop()
            granted: asyncio.Future[None] = loop.create_future()

            def grant() -> None:
                if not granted.done():
                    granted.set_result(None)

            subscription = rate_limit(limiter)(_Charge(tokens)).subscribe(
                on_completed=grant, scheduler=AsyncIOScheduler(loop)
            )
            try:
                await granted
            finally:
                subscription.dispose()
        self.granted += 1

    def may_start(self, worker: str, in_flight: float) -> bool:
        """Whether a worker may start a row (false for good once the budget is reached)."""
        self.in_flight[worker] = in_flight
        if not self.stopped and self.budget.reached(extra=sum(self.in_flight.values())):
            self.stopped = True
        return not self.stopped

    def report(self, row: dict[str, Any]) -> None:
        self.budget.finished(row["key"], row["cost_usd"])
        self.outbox.append(row)

    def drain(self) -> list[dict[str, Any]]:
        rows, self.outbox = self.outbox, []
        return rows

    def stats(self) -> dict[str, Any]:
        return {
            "askers": sorted(self.askers),
            "granted": self.granted,
            "stopped": self.stopped,
            "spent": self.budget.spent,
        }


def _estimate(request: StreamRequest, default_max_tokens: int | None) -> int:
    from ..metering import estimate_prompt_tokens

    return estimate_prompt_tokens(request) + (request.max_tokens or default_max_tokens or 1024)


async def _work_async(
    items: list[WorkItem],
    models: dict[str, tuple[str, str | None]],
    options: dict[str, Any],
    coordinator: Any,
) -> bool:
    me = worker_name()
    providers: dict[str, Provider[Any]] = {}
    built: dict[tuple[str, str | None], Provider[Any]] = {}
    for spec, (vendor, base_url) in models.items():
        shared = built.get((vendor, base_url))
        if shared is None:
            bound = registry.model(spec, base_url=base_url, allow_unknown_model=True)
            shared = built[(vendor, base_url)] = bound.provider
        providers[spec] = shared
    local = Budget(None)  # this worker's in-flight estimate, sent with each may_start

    def gate_for(vendor: str, default_max_tokens: int | None) -> GateFor:
        def for_request(request: StreamRequest) -> Callable[[Any], Any]:
            async def acquire() -> None:
                await coordinator.acquire.remote(vendor, _estimate(request, default_max_tokens), me)

            return gate(acquire)

        return for_request

    limited = options["limited"]  # only those wait on the coordinator: a round trip each
    gates = {
        p.name: gate_for(p.name, p.default_max_tokens) for p in built.values() if p.name in limited
    }
    runner = RowRunner(
        providers,
        operators=options["operators"],
        attempts=options["attempts"],
        backoff=options["backoff"],
        gates=gates,
        budget=local,
        worker=me,
    )
    reports: list[Any] = []

    async def may_start() -> bool:
        return bool(await coordinator.may_start.remote(me, local.in_flight))

    try:
        stopped = await run_items(
            items,
            runner,
            concurrency=options["concurrency"],
            on_row=lambda row: reports.append(coordinator.report.remote(row)),
            may_start=may_start,
        )
        for report in reports:
            await report
    finally:
        for provider in built.values():
            await provider.aclose()
    return stopped


def _work(
    items: list[WorkItem],
    models: dict[str, tuple[str, str | None]],
    options: dict[str, Any],
    coordinator: Any,
) -> bool:
    """One worker task: the local engine on this worker's own event loop."""
    return asyncio.run(_work_async(items, models, options, coordinator))


@functools.cache
def _remote() -> tuple[Any, Any]:
    ray = _ray()
    return ray.remote(num_cpus=0)(Coordinator), ray.remote(_work)


async def run_on_ray(
    pending: list[WorkItem],
    budget: Budget,
    on_row: Callable[[dict[str, Any]], None],
    *,
    models: dict[str, tuple[str, str | None]],
    limits: dict[str, tuple[float | None, float | None]],
    options: dict[str, Any],
    workers: int | None,
    ray_options: dict[str, Any],
    stats: dict[str, Any],
) -> bool:
    """Run ``pending`` on Ray; ``on_row`` (on the driver) gets every finished row.

    ``models``: ``{"provider:model": (vendor, base_url)}``; ``limits``: per vendor,
    ``(requests_per_minute, tokens_per_minute)``; ``options``: the row runner's
    (operators, attempts, backoff, concurrency). The coordinator's counts are put in
    ``stats``. Returns whether the budget left rows unstarted. Starts a local Ray
    instance when none is connected (``ray.init()`` honours ``RAY_ADDRESS``).
    """
    ray = _ray()
    if not pending:
        return False
    if not ray.is_initialized():
        ray.init()
    coordinator_class, work = _remote()
    coordinator = coordinator_class.remote(limits, budget.max_cost, budget.spent)
    count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    chunks = [pending[i::count] for i in range(count) if pending[i::count]]
    options = {**options, "limited": set(limits)}
    tasks = [
        work.options(**ray_options).remote(chunk, models, options, coordinator) for chunk in chunks
    ]
    waiting = list(tasks)

    async def drain() -> None:
        for row in await coordinator.drain.remote():
            budget.finished(row["key"], row["cost_usd"])
            on_row(row)

    try:
        while waiting:
            _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0)
            await drain()
            if waiting:
                await asyncio.sleep(_DRAIN_EVERY)
        stopped = any(await asyncio.gather(*tasks))
        await drain()
        stats.update(await coordinator.stats.remote())
        return stopped
    except asyncio.CancelledError:
        for task in waiting:
            ray.cancel(task, force=True)
        with contextlib.suppress(Exception):
            stats.update(await coordinator.stats.remote())
            await drain()
        raise
    finally:
        ray.kill(coordinator)

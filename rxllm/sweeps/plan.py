"""``rxllm.sweep``: prompts x models at dataset scale, persistent, resumable, budgeted.

:func:`sweep` checks everything and builds every row's request before anything
is sent; the returned :class:`Sweep` runs when awaited (``await sweep(...)``
in Jupyter or async code, ``sweep(...).run_sync()`` in a script) and gives a
:class:`SweepResult`. Finished rows are written to the store as they finish;
running the same sweep again (same prompts, models and fields, same ``db``)
skips them, so a sweep that was killed, hit its budget or was stopped is
continued by running it again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import registry
from ..bridge import background_loop, refuse_blocking_on_loop_thread
from ..operators import Backoff, RateLimiter, rate_limit
from ..provider import Provider, StreamOperator
from ..registry import BoundModel
from ..request import StreamRequest
from ..usage import UsageTracker
from .budget import Budget
from .engine import Gate, GateFor, RowRunner, WorkItem, run_items
from .progress import SweepProgress, live_progress, progress_kind
from .prompts import Prompt, load_prompts
from .store import SweepStore, row_key
from .summary import plot, summarize, to_dataframe

__all__ = ["DEFAULT_DB", "Sweep", "SweepResult", "sweep"]

DEFAULT_DB = "rxllm-sweep.sqlite"
Engine = Literal["local", "ray"]
RateLimits = Mapping[str, RateLimiter | Mapping[str, float]]


@dataclass
class SweepResult:
    """A sweep's rows (from the store, earlier runs included) and what this run did."""

    rows: list[dict[str, Any]]
    """One dict per finished row, prompt by prompt, models in the order given."""
    ran: int
    """Rows run (and stored) by this run."""
    skipped: int
    """Rows found finished in the store and not run again."""
    not_started: int
    """Rows left for a later run (the budget was reached, or the run was stopped)."""
    spent: float
    """Dollars over all of the sweep's stored rows."""
    db: str
    stopped: str | None = None
    """Why rows were left unstarted (``"budget $5 reached: $5.0003 spent"``), if they were."""
    workers: list[str] = field(default_factory=list)
    """The processes (``host:pid``) that ran this run's rows."""

    @property
    def complete(self) -> bool:
        return self.not_started == 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]

    def summary(self) -> list[dict[str, Any]]:
        """Per model: success rate, TTFT p50/p95, tokens/s, cost, errors by class."""
        return summarize(self.rows)

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        return to_dataframe(self.rows)

    def summary_dataframe(self) -> Any:
        """The summary as a pandas DataFrame indexed by model (needs pandas)."""
        return to_dataframe(self.summary(), index="model")

    def plot(self) -> Any:
        """Box plots of TTFT and tokens/s per model: a matplotlib Figure (needs matplotlib)."""
        return plot(self.rows)

    def __repr__(self) -> str:
        failed = len(self.failed)
        stop = f", stopped: {self.stopped}" if self.stopped else ""
        return (
            f"<SweepResult {len(self.rows)} rows ({failed} failed), ran {self.ran}, "
            f"skipped {self.skipped}, not started {self.not_started}, "
            f"${self.spent:.4f} in {self.db!r}{stop}>"
        )


class Sweep:
    """The rows of a sweep, ready to run: ``await`` it, or ``run_sync()`` in a script."""

    def __init__(
        self,
        items: list[WorkItem],
        models: list[BoundModel],
        *,
        owned: Sequence[Provider[Any]],
        db: str,
        max_cost: float | None,
        concurrency: int,
        operators: Sequence[StreamOperator],
        attempts: int,
        backoff: Backoff | float | None,
        retry_failed: bool,
        rate_limits: RateLimits,
        engine: Engine,
        workers: int | None,
        ray_options: Mapping[str, Any],
        progress: bool | None,
        usage_tracker: UsageTracker | None,
        tag: str | None,
    ) -> None:
        self.items = items
        self.models = models
        self._owned = list(owned)
        self.db = db
        self.max_cost = max_cost
        self.concurrency = concurrency
        self.operators = tuple(operators)
        self.attempts = attempts
        self.backoff = backoff
        self.retry_failed = retry_failed
        self.rate_limits = dict(rate_limits)
        self.engine: Engine = engine
        self.workers = workers
        self.ray_options = dict(ray_options)
        self.progress = progress
        self.usage_tracker = usage_tracker
        self.tag = tag
        self.ray_stats: dict[str, Any] = {}
        """On Ray, the coordinator's counts after a run: the workers that asked for the
        limits (``askers``), the requests granted, whether the budget stopped it."""

    @property
    def keys(self) -> list[str]:
        return [item.key for item in self.items]

    def _limiter(self, provider: Provider[Any]) -> RateLimiter | None:
        given = self.rate_limits.get(provider.name)
        return provider.limiter if given is None else _limiter_of(given)

    def _gates(self) -> dict[str, GateFor]:
        gates: dict[str, GateFor] = {}
        for bound in self.models:
            limiter = self._limiter(bound.provider)
            if limiter is not None and bound.provider.name not in gates:
                gates[bound.provider.name] = _same_gate(rate_limit(limiter))
        return gates

    def limits(self) -> dict[str, tuple[float | None, float | None]]:
        """``{provider: (requests_per_minute, tokens_per_minute)}`` of the limited ones."""
        found = {}
        for bound in self.models:
            limiter = self._limiter(bound.provider)
            if limiter is not None:
                found[bound.provider.name] = (
                    limiter.requests_per_minute,
                    limiter.tokens_per_minute,
                )
        return found

    async def run(self) -> SweepResult:
        """Run the rows the store does not have; the sweep's rows when done."""
        store = SweepStore(self.db)
        try:
            return await self._run(store)
        finally:
            store.close()
            owned, self._owned = self._owned, []
            for provider in owned:
                await provider.aclose()

    async def _run(self, store: SweepStore) -> SweepResult:
        keys = self.keys
        stored = store.statuses(keys)
        finished = {k for k, s in stored.items() if s == "ok" or not self.retry_failed}
        pending = [item for item in self.items if item.key not in finished]
        budget = Budget(self.max_cost, spent=store.spent(keys))
        state = SweepProgress.of([b.spec for b in self.models], max_cost=self.max_cost)
        state.spent = budget.spent
        for item in self.items:
            entry = state.models[item.model]
            entry.total += 1
            entry.skipped += item.key in finished
        workers: set[str] = set()

        def on_row(row: dict[str, Any]) -> None:
            store.write(row)
            workers.add(row["worker"])
            state.add(row["model"], ok=row["status"] == "ok", cost=row["cost_usd"])

        after: list[StreamOperator] = []
        if self.usage_tracker is not None:
            after.append(self.usage_tracker.track(self.tag))
        async with live_progress(state, progress_kind(self.progress)):
            if self.engine == "ray":
                from .ray_engine import run_on_ray

                self.ray_stats = {}
                stopped_by_budget = await run_on_ray(
                    pending,
                    budget,
                    on_row,
                    models={b.spec: (b.provider.name, b.provider.base_url) for b in self.models},
                    limits=self.limits(),
                    options={
                        "operators": self.operators,
                        "attempts": self.attempts,
                        "backoff": self.backoff,
                        "concurrency": self.concurrency,
                    },
                    workers=self.workers,
                    ray_options=self.ray_options,
                    stats=self.ray_stats,
                )
            else:
                runner = RowRunner(
                    {b.spec: b.provider for b in self.models},
                    operators=self.operators,
                    attempts=self.attempts,
                    backoff=self.backoff,
                    gates=self._gates(),
                    budget=budget,
                    after=after,
                )
                stopped_by_budget = await run_items(
                    pending,
                    runner,
                    concurrency=self.concurrency,
                    on_row=on_row,
                    may_start=lambda: not budget.reached(),
                )
            stopped = budget.describe() if stopped_by_budget else None
            state.stopped = stopped
        ran = state.finished
        rows = store.rows(keys)
        return SweepResult(
            rows=rows,
            ran=ran,
            skipped=len(self.items) - len(pending),
            not_started=len(pending) - ran,
            spent=store.spent(keys),
            db=self.db,
            stopped=stopped,
            workers=sorted(workers),
        )

    def run_sync(self) -> SweepResult:
        """Blocking :meth:`run`, for scripts (on rxllm's background loop)."""
        refuse_blocking_on_loop_thread("Sweep.run_sync()", "await rxllm.sweep(...)")
        return asyncio.run_coroutine_threadsafe(self.run(), background_loop()).result()

    def __await__(self) -> Generator[Any, None, SweepResult]:
        return self.run().__await__()

    def __repr__(self) -> str:
        return (
            f"<Sweep {len(self.items)} rows: {len(self.items) // max(1, len(self.models))} "
            f"prompts x {len(self.models)} models → {self.db!r}>"
        )


def _same_gate(gate: Gate) -> GateFor:
    """Every row through one ``rate_limit`` (it estimates each stream's tokens itself)."""

    def for_request(_: StreamRequest) -> Gate:
        return gate

    return for_request


def _limiter_of(limit: RateLimiter | Mapping[str, float]) -> RateLimiter:
    if isinstance(limit, RateLimiter):
        return limit
    unknown = set(limit) - {"requests_per_minute", "tokens_per_minute"}
    if unknown:
        raise ValueError(
            f"rate_limits take requests_per_minute and tokens_per_minute, not {sorted(unknown)}"
        )
    return RateLimiter(
        requests_per_minute=limit.get("requests_per_minute"),
        tokens_per_minute=limit.get("tokens_per_minute"),
    )


def _bind(models: Sequence[str | BoundModel]) -> tuple[list[BoundModel], list[Provider[Any]]]:
    bound: list[BoundModel] = []
    built: dict[str, Provider[Any]] = {}  # one provider (one connection pool) per vendor
    for spec in models:
        if isinstance(spec, str):
            found = registry.model(spec)
            shared = built.setdefault(found.provider.name, found.provider)
            found = BoundModel(shared, found.name)
        elif isinstance(spec, BoundModel):
            found = spec
        else:
            raise ValueError(
                f"sweep() models are 'provider:model' strings or bound models, got {spec!r}"
            )
        if any(b.spec == found.spec for b in bound):
            raise ValueError(f"sweep() got {found.spec!r} twice")
        bound.append(found)
    return bound, list(built.values())


def _request(bound: BoundModel, prompt: Prompt, fields: Mapping[str, Any]) -> StreamRequest:
    if isinstance(prompt, dict):
        return bound.request(None, **{**fields, **prompt})
    return bound.request(prompt, **fields)


def sweep(
    prompts: str | os.PathLike[str] | Iterable[Any],
    models: Sequence[str | BoundModel] = (),
    *,
    db: str | os.PathLike[str] = DEFAULT_DB,
    max_cost: float | None = None,
    concurrency: int = 32,
    operators: Sequence[StreamOperator] = (),
    attempts: int = 3,
    backoff: Backoff | float | None = None,
    retry_failed: bool = False,
    rate_limits: RateLimits | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    ray_options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    usage_tracker: UsageTracker | None = None,
    tag: str | None = None,
    **request_fields: Any,
) -> Sweep:
    """Every prompt x every model, one row each, stored as it finishes; run it by awaiting.

    Args:
        prompts: strings, requests or dicts of request fields (a pandas column too),
            or a ``.jsonl`` / ``.csv`` / ``.parquet`` file's path.
        models: ``"provider:model"`` strings (one provider is built per vendor and
            closed after the run) or bound models (``rxllm.model``, ``rxllm.connect``).
        db: the SQLite file the rows go to (``":memory:"`` for none); run the same
            sweep with the same ``db`` again to continue it.
        max_cost: dollars; no new row starts once the stored rows and the estimate of
            those in flight reach it (in-flight rows finish). ``SweepResult.stopped``
            says so.
        concurrency: streams at once per provider.
        operators: piped onto every row's stream (``timeout(...)``, ``take_tokens(...)``),
            before the retry.
        attempts: ``retry_on_interrupt`` attempts per row (1: no retry); ``backoff``
            its :class:`~rxllm.operators.Backoff` (or initial seconds).
        retry_failed: run the rows stored as failed again (finished ones never are).
        rate_limits: ``{"openai": {"requests_per_minute": 500}}`` or a ``RateLimiter``
            per provider; without one, the provider's configured limiter applies.
        engine: ``"local"`` (this process, one event loop) or ``"ray"`` (needs
            ``rxllm[ray]``; the limits and the budget are held cluster-wide).
        workers: Ray tasks to spread the rows over (default: the cluster's CPUs).
        ray_options: for the Ray tasks (``{"runtime_env": {"env_vars": {...}}}`` to
            give workers their keys as secrets of the runtime environment).
        progress: ``None`` shows progress in Jupyter or on a terminal, ``True``
            always, ``False`` never.
        usage_tracker: counts every row's usage under ``tag``.
        **request_fields: any :class:`~rxllm.request.StreamRequest` field for every
            row (a dict prompt's own fields win).

    Raises:
        ValueError: no prompts or models, a bad prompt, or a bad option.
        ConfigurationError: a bad model string, or no key.

    Example:
        >>> result = await rxllm.sweep(["Explain TCP", "Explain UDP"],
        ...     models=["anthropic:claude-haiku-4-5", "openai:gpt-5-mini"],
        ...     db="results.sqlite", max_cost=1.0, max_tokens=200)
        >>> result.summary_dataframe()
    """
    if not models:
        raise ValueError("sweep() needs at least one model")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    Budget(max_cost)  # checks max_cost
    for name, limit in (rate_limits or {}).items():
        _limiter_of(limit)  # checks the numbers
        registry.canonical_name(name)
    loaded = load_prompts(prompts)
    bound, owned = _bind(models)
    try:
        items = [
            WorkItem(row_key(request, b.spec), index, b.spec, request)
            for index, prompt in enumerate(loaded)
            for b in bound
            for request in (_request(b, prompt, request_fields),)
        ]
    except BaseException:
        for provider in owned:
            provider.close()
        raise
    return Sweep(
        items,
        bound,
        owned=owned,
        db=os.fspath(db),
        max_cost=max_cost,
        concurrency=concurrency,
        operators=operators,
        attempts=attempts,
        backoff=backoff,
        retry_failed=retry_failed,
        rate_limits=rate_limits or {},
        engine=engine,
        workers=workers,
        ray_options=ray_options or {},
        progress=progress,
        usage_tracker=usage_tracker,
        tag=tag,
    )

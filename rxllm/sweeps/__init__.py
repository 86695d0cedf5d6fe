"""Sweeps: prompts x models at dataset scale, stored, resumable, budgeted, on Ray if need be.

``rxllm.sweep(prompts, models=[...], db="results.sqlite", max_cost=5)`` runs
every (prompt, model) pair as one row: a bounded number of streams per
provider under its rate limit, interrupted streams retried, a failure
recorded as that row's result. Every finished row is written at once to a
SQLite file (:mod:`rxllm.sweeps.store`), so running the same sweep again
continues it. The result is a table, a per-model summary and plots
(:mod:`rxllm.sweeps.summary`); ``engine="ray"`` spreads the rows over a Ray
cluster with the limits and the budget held cluster-wide
(:mod:`rxllm.sweeps.ray_engine`).

Example:
    >>> result = await rxllm.sweep("prompts.jsonl", models=["openai:gpt-5-mini",
    ...     "anthropic:claude-haiku-4-5"], db="results.sqlite", max_tokens=200)
    >>> result.summary_dataframe()
"""

from __future__ import annotations

from .plan import DEFAULT_DB, Sweep, SweepResult, sweep
from .store import SweepStore, row_key
from .summary import plot, summarize

__all__ = [
    "DEFAULT_DB",
    "Sweep",
    "SweepResult",
    "SweepStore",
    "plot",
    "row_key",
    "summarize",
    "sweep",
]

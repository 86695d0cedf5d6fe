"""What a sweep's rows say: a table, a per-model summary and plots of the distributions.

Everything here reads stored rows (dicts with the store's columns), so the
summary of a finished sweep, of one still running in another process, and of
``rxllm sweep --summary results.sqlite`` are computed the same way. pandas and
matplotlib are optional: without pandas the table is the list of rows; plots
need matplotlib (``pip install rxllm[plot]``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["SUMMARY_COLUMNS", "percentile", "plot", "summarize", "to_dataframe"]

SUMMARY_COLUMNS = (
    "model",
    "rows",
    "ok",
    "errors",
    "success_rate",
    "ttft_p50_s",
    "ttft_p95_s",
    "tokens_per_s_p50",
    "cost_usd",
    "cost_per_row_usd",
    "errors_by_class",
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0 to 100), interpolated linearly between the closest ranks
    (numpy's default); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per model, in the order models first appear.

    ``success_rate`` is ok rows / rows; TTFT and tokens/s percentiles are over the
    ok rows that have them; ``cost_usd`` sums every row's cost (a failed row may
    have cost something); ``cost_per_row_usd`` is that over all rows;
    ``errors_by_class`` maps an error class to its count.
    """
    by_model: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_model[row["model"]].append(row)
    out = []
    for model, group in by_model.items():
        ok = [r for r in group if r["status"] == "ok"]
        ttfts = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
        speeds = [r["tokens_per_s"] for r in ok if r["tokens_per_s"] is not None]
        cost = sum(r["cost_usd"] or 0.0 for r in group)
        errors = Counter(r["error_class"] for r in group if r["status"] != "ok")
        out.append(
            {
                "model": model,
                "rows": len(group),
                "ok": len(ok),
                "errors": len(group) - len(ok),
                "success_rate": len(ok) / len(group),
                "ttft_p50_s": percentile(ttfts, 50),
                "ttft_p95_s": percentile(ttfts, 95),
                "tokens_per_s_p50": percentile(speeds, 50),
                "cost_usd": cost,
                "cost_per_row_usd": cost / len(group),
                "errors_by_class": dict(sorted(errors.items())),
            }
        )
    return out


def to_dataframe(rows: Sequence[Mapping[str, Any]], index: str | None = None) -> Any:
    """``rows`` as a pandas DataFrame (pandas is not required by rxllm)."""
    try:
        import pandas as pd  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("a sweep's DataFrame needs pandas: pip install pandas") from error
    frame = pd.DataFrame([dict(r) for r in rows])
    return frame.set_index(index) if index and not frame.empty else frame


def plot(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Two box plots per model of the ok rows: time to first token and tokens per second.

    Returns the matplotlib ``Figure`` (a notebook shows it as the cell's value).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("sweep plots need matplotlib: pip install rxllm[plot]") from error
    models = list(dict.fromkeys(r["model"] for r in rows))
    figure = Figure(figsize=(11, 0.6 * len(models) + 2.2), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, column, label in (
        (axes[0], "ttft_s", "time to first token (s)"),
        (axes[1], "tokens_per_s", "tokens per second"),
    ):
        data = [
            [r[column] for r in rows if r["model"] == m and r["status"] == "ok" and r[column]]
            for m in models
        ]
        ax.boxplot(data, orientation="horizontal", tick_labels=models if ax is axes[0] else None)
        if ax is not axes[0]:
            ax.set_yticklabels([])
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(f"rxllm sweep: {len(rows)} rows, {len(models)} models")
    return figure

"""``max_cost``: the sweep's spending cap, checked before each row starts.

What a row costs is known exactly only at its end, so the budget counts the
finished rows' cost plus, for every row in flight, an estimate that grows with
each token (the catalog's prices x the tokens seen so far). When the two reach
``max_cost`` no new row starts; the rows in flight finish (stopping them would
pay for output nobody keeps). The rows already in the store count too: the cap
is the sweep's, so running it again does not spend the budget a second time.
"""

from __future__ import annotations

import threading

from .. import catalog

__all__ = ["Budget", "Prices"]


class Prices:
    """Dollars per prompt and per completion token of one model (zero when unpriced)."""

    def __init__(self, provider: str, model: str) -> None:
        info = catalog.info(provider, model)
        self.known = info is not None
        self.prompt = info.input_price / 1e6 if info is not None else 0.0
        self.completion = info.output_price / 1e6 if info is not None else 0.0

    def estimate(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.prompt + completion_tokens * self.completion


class Budget:
    """Spend so far against ``max_cost`` (``None``: no cap). Thread-safe."""

    def __init__(self, max_cost: float | None, spent: float = 0.0) -> None:
        if max_cost is not None and (isinstance(max_cost, bool) or not max_cost > 0):
            raise ValueError(f"max_cost must be a positive number of dollars, got {max_cost!r}")
        self.max_cost = max_cost
        self.spent = spent
        """Dollars of the finished rows (with the store's earlier rows)."""
        self._in_flight: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> float:
        """The estimated cost so far of the rows running now."""
        with self._lock:
            return sum(self._in_flight.values())

    @property
    def total(self) -> float:
        """Finished rows plus the estimate of those in flight."""
        return self.spent + self.in_flight

    def reached(self, extra: float = 0.0) -> bool:
        """Whether no new row may start (``extra``: in-flight cost seen elsewhere)."""
        return self.max_cost is not None and self.total + extra >= self.max_cost

    def running(self, key: str, estimate: float) -> None:
        with self._lock:
            self._in_flight[key] = estimate

    def finished(self, key: str, cost: float | None) -> None:
        with self._lock:
            self._in_flight.pop(key, None)
            self.spent += cost or 0.0

    def abandoned(self, key: str) -> None:
        """A row stopped before its end (cancelled): its estimate leaves the count."""
        with self._lock:
            self._in_flight.pop(key, None)

    def describe(self) -> str:
        """``"budget $0.50 reached: $0.5012 spent"``."""
        return f"budget ${self.max_cost:g} reached: ${self.total:.4f} spent"

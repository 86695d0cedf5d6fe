"""Model catalog (placeholder until the catalog data file lands)."""

from __future__ import annotations

from .events import Usage


def cost(provider: str, model: str, usage: Usage) -> float | None:
    return None


def models(provider: str) -> list[str]:
    return []

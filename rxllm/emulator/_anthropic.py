"""anthropic dialect (to be written)."""

from __future__ import annotations

from aiohttp import web

from ._state import EmulatorState


def routes(state: EmulatorState) -> list[web.RouteDef]:
    return []

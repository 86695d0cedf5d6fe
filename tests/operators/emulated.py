"""End-to-end helpers: the four vendors against the emulator, and running a stream to its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxllm import registry
from rxllm.emulator import Emulator
from rxllm.events import StreamEvent, TokenEvent
from rxllm.provider import Provider
from rxllm.testing import EMULATOR_KEY

# The vendors compared by default (rxllm's four), from their specs, each with a test model.
NAMES = [spec.name for spec in registry.specs() if spec.compared_by_default]
MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o", "grok": "grok-4"}


def build(name: str, emulator: Emulator) -> Provider[Any]:
    """The provider ``name`` pointed at ``emulator``."""
    return registry.provider(name, api_key=EMULATOR_KEY, base_url=emulator.base_url(name))


def model(name: str, **knobs: object) -> str:
    """The provider's test model with emulator knobs (``claude-sonnet-4-5~fault=drop,after=4``)."""
    base = MODELS.get(name) or registry.spec(name).default_model or "test-model"
    if not knobs:
        return base
    return base + "~" + ",".join(f"{k}={v}" for k, v in knobs.items())


@pytest_asyncio.fixture(params=NAMES)
async def provider(
    request: pytest.FixtureRequest, emulator: Emulator
) -> AsyncIterator[Provider[Any]]:
    """Each of the four providers, on a fresh emulator."""
    built = build(request.param, emulator)
    yield built
    await built.aclose()


async def run(stream: Observable[StreamEvent]) -> tuple[list[StreamEvent], Exception | None]:
    """Every event of one subscription on the running loop, and the error that ended it."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Exception | None] = loop.create_future()
    events: list[StreamEvent] = []

    def finish(error: Exception | None) -> None:
        if not ended.done():
            ended.set_result(error)

    subscription = stream.subscribe(
        events.append, finish, lambda: finish(None), scheduler=AsyncIOScheduler(loop)
    )
    try:
        error = await asyncio.wait_for(ended, 30)
    finally:
        subscription.dispose()
    return events, error


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenEvent))

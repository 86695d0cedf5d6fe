"""A provider's configured ``requests_per_minute`` / ``tokens_per_minute`` apply to every
one of its streams through one shared ``provider.limiter``; an explicit ``rate_limit``
still composes."""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler

import rxllm
from rxllm import config, registry
from rxllm.emulator import Emulator
from rxllm.events import DoneEvent, StreamEvent
from rxllm.operators import RateLimiter, rate_limit
from rxllm.provider import Provider
from rxllm.testing import EMULATOR_KEY


def openai(emu: Emulator, **limits: int) -> Provider[Any]:
    settings = config.load_settings(openai=limits) if limits else config.load_settings()
    return registry.provider(
        "openai", api_key=EMULATOR_KEY, base_url=emu.base_url("openai"), settings=settings
    )


async def first_done_then_count(
    emu: Emulator, first: Observable[StreamEvent], second: Observable[StreamEvent]
) -> int:
    """Subscribe both at once; when ``first`` is done and a moment passed, how many
    requests reached the emulator (2: ``second`` went too; 1: it is still waiting)."""
    before = len(emu.requests)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def on_next(event: StreamEvent) -> None:
        if isinstance(event, DoneEvent) and not done.done():
            done.set_result(None)

    scheduler = AsyncIOScheduler(loop)
    a = first.subscribe(on_next, lambda e: None, scheduler=scheduler)
    b = second.subscribe(lambda e: None, lambda e: None, scheduler=scheduler)
    try:
        await asyncio.wait_for(done, 10)
        await asyncio.sleep(0.3)
        return len(emu.requests) - before
    finally:
        a.dispose()
        b.dispose()


def test_the_limiter_comes_from_configuration_one_per_provider() -> None:
    settings = config.load_settings(openai={"requests_per_minute": 60, "tokens_per_minute": 9000})
    provider = registry.provider("openai", api_key=EMULATOR_KEY, settings=settings)
    other = registry.provider("openai", api_key=EMULATOR_KEY, settings=settings)
    assert isinstance(provider.limiter, RateLimiter)
    assert provider.limiter.requests_per_minute == 60
    assert provider.limiter.tokens_per_minute == 9000
    assert other.limiter is not provider.limiter  # each provider object has its own budget
    unlimited = registry.provider("openai", api_key=EMULATOR_KEY, settings=config.load_settings())
    assert unlimited.limiter is None


async def test_two_streams_of_a_provider_share_its_configured_budget(emulator: Emulator) -> None:
    provider = openai(emulator, requests_per_minute=1)
    try:
        stream = provider.stream("Hi", model="gpt-4o", max_tokens=5)
        assert await first_done_then_count(emulator, stream, stream) == 1
    finally:
        await provider.aclose()


async def test_without_limits_both_streams_go_at_once(emulator: Emulator) -> None:
    provider = openai(emulator)
    try:
        stream = provider.stream("Hi", model="gpt-4o", max_tokens=5)
        assert await first_done_then_count(emulator, stream, stream) == 2
    finally:
        await provider.aclose()


async def test_an_explicit_rate_limit_composes_with_the_configured_one(
    emulator: Emulator,
) -> None:
    # Plenty configured, one request a minute explicitly: the explicit budget holds.
    generous = openai(emulator, requests_per_minute=600)
    strict = RateLimiter(requests_per_minute=1)
    try:
        stream = generous.stream("Hi", model="gpt-4o", max_tokens=5).pipe(rate_limit(strict))
        assert await first_done_then_count(emulator, stream, stream) == 1
    finally:
        await generous.aclose()
    # The other way round: a generous explicit limiter does not lift the configured one.
    tight = openai(emulator, requests_per_minute=1)
    try:
        plenty = RateLimiter(requests_per_minute=600)
        stream = tight.stream("Hi", model="gpt-4o", max_tokens=5).pipe(rate_limit(plenty))
        assert await first_done_then_count(emulator, stream, stream) == 1
    finally:
        await tight.aclose()


async def test_a_bound_model_streams_through_its_providers_limiter(emulator: Emulator) -> None:
    settings = config.load_settings(openai={"requests_per_minute": 1})
    bound = rxllm.model(
        "openai:gpt-4o",
        api_key=EMULATOR_KEY,
        base_url=emulator.base_url("openai"),
        settings=settings,
    )
    try:
        stream = bound.stream("Hi", max_tokens=5)
        assert await first_done_then_count(emulator, stream, stream) == 1
    finally:
        await bound.provider.aclose()


def test_for_provider_reads_the_configuration_by_name_or_alias() -> None:
    settings = config.load_settings(grok={"requests_per_minute": 7})
    limiter = RateLimiter.for_provider("xai", settings=settings)
    assert limiter is not None
    assert limiter.requests_per_minute == 7
    assert RateLimiter.for_provider(registry.spec("grok"), settings=settings) is limiter
    assert RateLimiter.for_provider("openai", settings=settings) is None

"""Hundreds of streams on one loop through a small connection pool all complete: waiting
for a free connection is never a connect timeout (the scaled-down form of
``bench/bench_load.py scale``, which runs 3,000; no timing is asserted)."""

from __future__ import annotations

import asyncio

import pytest

import rxllm
from rxllm import registry
from rxllm.emulator import Emulator
from rxllm.testing import EMULATOR_KEY

from .operators.emulated import model

STREAMS = 300


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
async def test_300_streams_through_10_connections_all_complete(
    name: str, emulator: Emulator
) -> None:
    # A pool far smaller than the load: every stream completes, exact, none fails for
    # waiting. (The read limit is generous: the emulator shares this loop, and on a loaded
    # machine one read may wait long; the test below shows the wait for a slot is unbounded.)
    provider = registry.provider(
        name,
        api_key=EMULATOR_KEY,
        base_url=emulator.base_url(name),
        max_connections=10,
        timeout=30.0,
    )
    try:
        results = await asyncio.gather(
            *(
                rxllm.collect(provider.stream(f"stream {i}", model=model(name, words=20)))
                for i in range(STREAMS)
            ),
            return_exceptions=True,
        )
    finally:
        await provider.aclose()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert all(r.text and r.usage.completion_tokens > 0 for r in results)  # type: ignore[union-attr]
    assert len(emulator.requests) == STREAMS
    assert all(r.completed for r in emulator.requests)


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini", "grok"])
async def test_waiting_for_a_slot_longer_than_the_read_limit_is_not_a_timeout(
    name: str, emulator: Emulator
) -> None:
    # One connection, six streams whose first token takes 0.5 s: the last waits at least
    # 2.5 s for the connection, longer than the 2 s read limit, while no read of any stream
    # waits more than about 0.5 s. All complete.
    provider = registry.provider(
        name,
        api_key=EMULATOR_KEY,
        base_url=emulator.base_url(name),
        max_connections=1,
        timeout=2.0,
    )
    try:
        results = await asyncio.gather(
            *(
                rxllm.collect(provider.stream(f"slot {i}", model=model(name, ttft=0.5, words=3)))
                for i in range(6)
            ),
            return_exceptions=True,
        )
    finally:
        await provider.aclose()
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(emulator.requests) == 6
    assert all(r.completed for r in emulator.requests)

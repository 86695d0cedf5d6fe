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
    # A short read timeout and a pool far smaller than the load: most streams wait for a
    # slot much longer than `timeout`, and none may fail for it.
    provider = registry.provider(
        name,
        api_key=EMULATOR_KEY,
        base_url=emulator.base_url(name),
        max_connections=10,
        timeout=1.0,
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

"""The load runs of ``bench/bench_load.py``, scaled down: they assert correctness, never time.

Many concurrent streams come back exact; random cancels leave no task, file descriptor
or socket behind and every request the server saw ended; a soak of random faults
through ``timeout`` and ``retry_on_interrupt`` gives exactly the uninterrupted text;
a slow consumer of a long stream through the bounded ``aiter`` holds memory flat.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import tracemalloc
from typing import Any

import pytest
import reactivex

import rxllm
from rxllm import operators as rx
from rxllm.emulator import Emulator
from rxllm.events import StreamEvent, TokenEvent
from tests.operators.emulated import NAMES, build, model

FAULTS = ("rate_limited", "overloaded", "drop", "truncate", "stall", "error_event")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


@pytest.mark.parametrize("name", NAMES)
async def test_concurrent_streams_are_each_exact(name: str, emulator: Emulator) -> None:
    provider = build(name, emulator)
    prompts = [f"Stream {i} under load" for i in range(40)]
    try:
        expected = [await provider.complete(p, model=model(name, words=60)) for p in prompts]
        results = await asyncio.gather(
            *(rxllm.collect(provider.stream(p, model=model(name, words=60))) for p in prompts)
        )
    finally:
        await provider.aclose()
    for want, got in zip(expected, results, strict=True):
        assert (got.text, got.usage) == (want.text, want.usage)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
@pytest.mark.parametrize("name", NAMES)
async def test_random_cancels_leave_nothing_behind(name: str, emulator: Emulator) -> None:
    rng = random.Random(name)
    warm = build(name, emulator)  # what an SDK keeps for the process, made before counting
    await warm.complete("Warm up", model=model(name, words=3))
    await warm.aclose()
    gc.collect()
    before = (len(asyncio.all_tasks()), _fds(), _sockets())
    emulator.reset()
    unexpected: list[BaseException] = []
    provider = build(name, emulator)
    try:
        await asyncio.gather(*(_cancel_one(provider, name, rng, unexpected) for _ in range(60)))
    finally:
        await provider.aclose()
    assert await asyncio.to_thread(emulator.wait_for_idle, 10)

    def grown() -> list[int]:
        gc.collect()
        now = (len(asyncio.all_tasks()), _fds(), _sockets())
        return [after - then for after, then in zip(now, before, strict=True) if after > then]

    for _ in range(50):  # cancelled tasks finish their cleanup on the next loop turns
        if not grown():
            break
        await asyncio.sleep(0.02)
    # No more tasks, descriptors or sockets than before (the emulator, on this loop, may
    # have finished serving the warm-up meanwhile: fewer is fine).
    assert grown() == []
    assert unexpected == []
    seen = emulator.requests
    assert seen  # some reached the server before they were stopped...
    assert all(r.ended is not None for r in seen)  # ...and every one of those ended
    assert sum(r.disconnected for r in seen) >= len(seen) - sum(r.completed for r in seen)


async def _cancel_one(
    provider: Any, name: str, rng: random.Random, unexpected: list[BaseException]
) -> None:
    how = rng.choice(("dispose", "take_tokens", "timeout", "cancel_when"))
    after = rng.randint(1, 30)
    stream: Any = provider.stream("Cancel me", model=model(name, tps=400, words=200))
    if how == "take_tokens":
        stream = stream.pipe(rx.take_tokens(after))
    elif how == "timeout":
        stream = stream.pipe(rx.timeout(total=rng.uniform(0.01, 0.1)))
    elif how == "cancel_when":
        stream = stream.pipe(rx.cancel_when(reactivex.timer(rng.uniform(0.01, 0.1))))
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen = 0
    subscription: Any = None

    def on_next(event: StreamEvent) -> None:
        nonlocal seen
        seen += isinstance(event, TokenEvent)
        if how == "dispose" and seen == after:
            subscription.dispose()
            finish()

    def finish(error: Exception | None = None) -> None:
        if error is not None and not isinstance(error, rxllm.errors.TimeoutError):
            unexpected.append(error)
        if not ended.done():
            ended.set_result(None)

    subscription = stream.subscribe(on_next, finish, finish)
    await asyncio.wait_for(ended, 30)
    subscription.dispose()


@pytest.mark.parametrize("name", NAMES)
async def test_a_soak_of_random_faults_gives_exactly_the_uninterrupted_text(
    name: str, emulator: Emulator
) -> None:
    rng = random.Random(f"soak-{name}")
    provider = build(name, emulator)

    async def one(i: int) -> tuple[str, str, int]:
        fault = rng.choice(FAULTS)
        knobs: dict[str, object] = {"fault": fault, "times": rng.randint(1, 2), "words": 40}
        if fault == "rate_limited":
            knobs["retry_after"] = 0.01
        if fault in ("drop", "truncate", "stall", "error_event"):
            knobs["after"] = rng.randint(1, 50)
        clean = await provider.complete(f"Soak {i}", model=model(name, words=40))
        stream = provider.stream(f"Soak {i}", model=model(name, **knobs)).pipe(
            rx.timeout(idle=0.5),
            rx.retry_on_interrupt(4, backoff=rx.Backoff(initial=0.01, maximum=0.05)),
        )
        result = await rxllm.collect(stream)
        attempts = int(result.details.get("attempts", 1))
        # Usage is summed over the attempts: never less than one clean run's (an attempt
        # refused before any output is free), and still priced.
        assert result.usage.completion_tokens >= clean.usage.completion_tokens
        assert result.usage.prompt_tokens >= clean.usage.prompt_tokens
        assert clean.usage.cost is not None
        assert result.usage.cost is not None
        assert result.usage.cost >= clean.usage.cost
        return clean.text, result.text, attempts

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(12)))
    finally:
        await provider.aclose()
    assert [got for _, got, _ in outcomes] == [want for want, _, _ in outcomes]
    assert sum(attempts for _, _, attempts in outcomes) > len(outcomes)  # faults did happen


async def test_a_slow_consumer_holds_memory_flat(emulator: Emulator) -> None:
    """20,000 tokens through ``aiter(buffer=16)`` to a consumer slower than the network:
    what is held at the end is no more than after the first 5,000 (plus slack)."""
    provider = build("openai", emulator)
    stream = provider.stream("Long", model=model("openai", words=12_000))
    tracemalloc.start()
    seen = 0
    marks: list[int] = []
    try:
        async for event in rxllm.aiter(stream, buffer=16):
            if isinstance(event, TokenEvent):
                seen += 1
                if seen % 500 == 0:
                    await asyncio.sleep(0.001)
                if seen in (5_000, 20_000):  # ~1.7 tokens a word: 12,000 words is enough
                    marks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
        await provider.aclose()
    assert seen >= 20_000
    early, late = marks
    assert late - early < 256 * 1024  # 15,000 more tokens, no more than 256 KB more held

"""rxllm at load: many streams, random cancels, a faulty soak, a slow consumer.

Four runs against rxllm's emulator in its own process (so its CPU is not the
client's), each checking correctness as it measures:

- ``concurrent``: N streams (default 1,000) of ~500 tokens at once on one event loop,
  every one's text and usage checked exact against the emulator's deterministic
  reply; wall time, client CPU per stream and peak RSS, next to the same load
  through the raw SDK (``--compare-sdk``, OpenAI and Anthropic).
- ``cancels``: M streams (default 10,000) stopped at random points by ``dispose``,
  ``take_tokens``, ``timeout``, ``cancel_when`` or closing the provider; afterwards
  the asyncio tasks, open file descriptors and sockets are counted against the count
  before, and every request that reached the server must be recorded as ended.
- ``soak``: K streams (default 1,000) with random faults (rate limits with
  retry-after, overloads, drops, truncations, stalls, error events) through
  ``timeout(idle=…)`` and ``retry_on_interrupt``: every stream must end with exactly
  the text of an uninterrupted run, its usage summed over attempts.
- ``slow``: one 1,000,000-token stream read through ``rxllm.aiter(buffer=…)`` by a
  consumer slower than the network: peak memory at 10k and 1M tokens.

The test suite keeps scaled-down versions of each (``tests/test_load.py``) that
assert correctness only, never timings. Not a test: run it by hand::

    .venv/bin/python bench/bench_load.py                       # all four, full size
    .venv/bin/python bench/bench_load.py concurrent --streams 200 --providers openai
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import os
import platform
import random
import resource
import socket
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_providers import KEY, MODELS, EmulatorHandle

import rxllm
from rxllm import operators as rx
from rxllm.events import DoneEvent, StreamEvent, TokenEvent

PROVIDERS = ("anthropic", "openai", "gemini", "grok")
FAULTS = ("rate_limited", "overloaded", "drop", "truncate", "stall", "error_event")


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def _open_sockets() -> int:
    count = 0
    if not os.path.isdir("/proc/self/fd"):
        return -1
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
    return count


def _provider(name: str, urls: dict[str, str], **options: Any) -> Any:
    url = urls["xai" if name == "grok" else name]
    return rxllm.provider(name, api_key=KEY, base_url=url, **options)


def _model(name: str, **knobs: object) -> str:
    if not knobs:
        return MODELS[name]
    return MODELS[name] + "~" + ",".join(f"{k}={v}" for k, v in knobs.items())


def _text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


# -- concurrent ---------------------------------------------------------------------------


async def _concurrent(name: str, urls: dict[str, str], streams: int, words: int) -> dict[str, Any]:
    provider = _provider(name, urls)
    try:
        model = _model(name, words=words)
        prompts = [f"Stream {i} about load" for i in range(streams)]
        # The emulator's reply is derived from the request: each stream's uninterrupted
        # reply, one at a time, is what the concurrent run must reproduce exactly.
        expected = [await provider.complete(p, model=model) for p in prompts]
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        results = await asyncio.gather(
            *(rxllm.collect(provider.stream(p, model=model)) for p in prompts),
            return_exceptions=True,
        )
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    finally:
        await provider.aclose()
    failed = [r for r in results if isinstance(r, BaseException)]
    exact = sum(
        1
        for want, got in zip(expected, results, strict=True)
        if not isinstance(got, BaseException) and (got.text, got.usage) == (want.text, want.usage)
    )
    return {
        "provider": name,
        "streams": streams,
        "tokens_mean": round(sum(e.usage.completion_tokens for e in expected) / streams),
        "failed": len(failed),
        "failures": sorted({type(f).__name__ for f in failed}),
        "exact": exact,
        "wall_s": round(wall, 2),
        "cpu_ms_per_stream": round(cpu / streams * 1000, 3),
        "peak_rss_mb": round(_rss_mb(), 1),
    }


async def _scale(
    name: str, urls: dict[str, str], streams: int, words: int, base: int = 100
) -> dict[str, Any]:
    """Issue 13: ``streams`` (3,000) concurrent ~200-token streams on one loop, next to
    ``base`` (100): all must complete exact; CPU per stream at both sizes and their ratio
    (target ≤ 1.3x); peak memory per stream (growth of peak RSS over the run / streams).
    Waiting for a pool slot is never a connect timeout (the providers' pool timeout is
    off), so no stream may fail."""
    small = await _concurrent(name, urls, base, words)
    before = _rss_mb()
    large = await _concurrent(name, urls, streams, words)
    ratio = large["cpu_ms_per_stream"] / small["cpu_ms_per_stream"]
    return {
        "provider": name,
        "small": small,
        "large": large,
        "cpu_per_stream_ratio": round(ratio, 2),
        "cpu_per_stream_ratio_target": 1.3,
        "all_complete": large["failed"] == 0 and large["exact"] == streams,
        "peak_rss_kb_per_stream": round((large["peak_rss_mb"] - before) * 1024 / streams, 1),
    }


async def _concurrent_sdk(
    name: str, urls: dict[str, str], streams: int, words: int
) -> dict[str, Any] | None:
    """The same load through the raw SDK (its own stream iteration), for comparison."""
    model = _model(name, words=words)
    if name == "openai":
        import openai

        client = openai.AsyncOpenAI(api_key=KEY, base_url=urls["openai"], max_retries=0)

        async def one(prompt: str) -> int:
            stream = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                stream_options={"include_usage": True},
            )
            return len([c async for c in stream if c.choices and c.choices[0].delta.content])

    elif name == "anthropic":
        import anthropic

        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=urls["anthropic"], max_retries=0)

        async def one(prompt: str) -> int:
            stream = await client.messages.create(
                model=model,
                max_tokens=4096,
                messages=[{"role": "user", "content": prompt}],
                stream=True,
            )
            return len([e async for e in stream if e.type == "content_block_delta"])

    else:
        return None
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        results = await asyncio.gather(
            *(one(f"Stream {i} about load") for i in range(streams)), return_exceptions=True
        )
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    finally:
        await client.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    return {
        "provider": f"{name} (raw SDK)",
        "streams": streams,
        "failed": len(failed),
        "failures": sorted({type(f).__name__ for f in failed}),
        "wall_s": round(wall, 2),
        "cpu_ms_per_stream": round(cpu / streams * 1000, 3),
    }


# -- cancels ------------------------------------------------------------------------------

STOPS = ("dispose", "take_tokens", "timeout", "cancel_when", "close")


async def _cancels(name: str, urls: dict[str, str], streams: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    # A first stream: what the SDKs keep for the process (gRPC's pollers, TLS contexts)
    # is made before the count starts, so only what the cancels leave is counted.
    warm = _provider(name, urls)
    await warm.complete("Warm up", model=_model(name, words=5))
    await warm.aclose()
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    fds_before, sockets_before = _open_fds(), _open_sockets()
    stops: dict[str, int] = dict.fromkeys(STOPS, 0)
    errors: dict[str, int] = {}
    batch = 100
    done_streams = 0
    while done_streams < streams:
        provider = _provider(name, urls)
        try:
            await asyncio.gather(
                *(_one_cancel(provider, name, urls, rng, stops, errors) for _ in range(batch))
            )
        finally:
            await provider.aclose()
        done_streams += batch
    await asyncio.sleep(0.2)  # let cancelled tasks' cleanup run
    gc.collect()
    return {
        "provider": name,
        "streams": done_streams,
        "stops": stops,
        "unexpected_errors": errors,
        "tasks_left": len(asyncio.all_tasks()) - tasks_before,
        "fds_left": _open_fds() - fds_before,
        "sockets_left": _open_sockets() - sockets_before,
    }


async def _one_cancel(
    shared: Any,
    name: str,
    urls: dict[str, str],
    rng: random.Random,
    stops: dict[str, int],
    errors: dict[str, int],
) -> None:
    how = rng.choice(STOPS)
    stops[how] += 1
    # Closing a provider ends every stream on it: that stop gets a provider of its own.
    provider = _provider(name, urls) if how == "close" else shared
    after = rng.randint(1, 40)
    stream = provider.stream("Cancel me", model=_model(name, tps=400, words=300))
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    seen = 0
    subscription: Any = None

    def on_next(event: StreamEvent) -> None:
        nonlocal seen
        if isinstance(event, TokenEvent):
            seen += 1
            if how == "dispose" and seen == after and subscription is not None:
                subscription.dispose()
                if not ended.done():
                    ended.set_result(None)

    def finish(error: Exception | None = None) -> None:
        expected = rxllm.errors.TimeoutError, rxllm.errors.CancelledError
        if error is not None and not isinstance(error, expected):
            key = type(error).__name__
            errors[key] = errors.get(key, 0) + 1
        if not ended.done():
            ended.set_result(None)

    source = stream
    if how == "take_tokens":
        source = stream.pipe(rx.take_tokens(after))
    elif how == "timeout":
        source = stream.pipe(rx.timeout(total=rng.uniform(0.01, 0.2)))
    elif how == "cancel_when":
        source = stream.pipe(rx.cancel_when(_timer(rng.uniform(0.01, 0.2))))
    subscription = source.subscribe(on_next, finish, lambda: finish())
    if how == "close":
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        await provider.aclose()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(ended, 30)
    subscription.dispose()


def _timer(seconds: float) -> Any:
    import reactivex

    return reactivex.timer(seconds)


# -- soak ---------------------------------------------------------------------------------


async def _soak(name: str, urls: dict[str, str], streams: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    provider = _provider(name, urls, timeout=5)
    mismatched = 0
    usage_short = 0
    failed: dict[str, int] = {}
    attempts_total = 0
    try:
        semaphore = asyncio.Semaphore(100)

        async def one(i: int) -> None:
            nonlocal mismatched, attempts_total, usage_short
            prompt = f"Soak {i}"
            fault = rng.choice(FAULTS)
            knobs: dict[str, object] = {"fault": fault, "times": rng.randint(1, 2), "words": 80}
            if fault == "rate_limited":
                knobs["retry_after"] = 0.05
            if fault in ("drop", "truncate", "stall", "error_event"):
                knobs["after"] = rng.randint(1, 60)
            async with semaphore:
                clean = await provider.complete(prompt, model=_model(name, words=80))
                stream = provider.stream(prompt, model=_model(name, **knobs)).pipe(
                    rx.timeout(idle=1.0),
                    rx.retry_on_interrupt(4, backoff=rx.Backoff(initial=0.01, maximum=0.1)),
                )
                try:
                    result = await rxllm.collect(stream)
                except Exception as error:
                    failed[type(error).__name__] = failed.get(type(error).__name__, 0) + 1
                    return
            attempts_total += int(result.details.get("attempts", 1))
            if result.text != clean.text:
                mismatched += 1
            # Usage summed over the attempts: at least one clean run's, and priced.
            usage, once = result.usage, clean.usage
            if (
                usage.completion_tokens < once.completion_tokens
                or usage.prompt_tokens < once.prompt_tokens
                or (once.cost is not None and (usage.cost is None or usage.cost < once.cost))
            ):
                usage_short += 1

        await asyncio.gather(*(one(i) for i in range(streams)))
    finally:
        await provider.aclose()
    return {
        "provider": name,
        "streams": streams,
        "mismatched_text": mismatched,
        "usage_not_summed": usage_short,
        "failed": failed,
        "attempts": attempts_total,
    }


# -- slow consumer ------------------------------------------------------------------------


async def _slow(name: str, urls: dict[str, str], tokens: int, buffer: int) -> dict[str, Any]:
    provider = _provider(name, urls)
    words = int(tokens / 1.75)
    stream = provider.stream("A very long story", model=_model(name, words=words, chunk=1))
    tracemalloc.start()
    seen = 0
    marks: dict[str, float] = {}
    try:
        async for event in rxllm.aiter(stream, buffer=buffer):
            if isinstance(event, TokenEvent):
                seen += 1
                if seen % 2000 == 0:
                    await asyncio.sleep(0.001)  # slower than the network
                if seen == 10_000:
                    marks["at_10k_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            elif isinstance(event, DoneEvent):
                break
    finally:
        marks["at_end_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        await provider.aclose()
    return {
        "provider": name,
        "tokens": seen,
        "buffer": buffer,
        **{k: round(v, 2) for k, v in marks.items()},
    }


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="*", default=["concurrent", "cancels", "soak", "slow"], help="which runs"
    )
    parser.add_argument("--providers", nargs="+", default=list(PROVIDERS))
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--words", type=int, default=285, help="~500 tokens")
    parser.add_argument("--cancels", type=int, default=10_000)
    parser.add_argument("--soak", type=int, default=1000)
    parser.add_argument("--slow-tokens", type=int, default=1_000_000)
    parser.add_argument("--buffer", type=int, default=64)
    parser.add_argument("--compare-sdk", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale-streams", type=int, default=3000)
    parser.add_argument("--scale-words", type=int, default=115, help="~200 tokens")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "host": socket.gethostname(),
    }
    runs: dict[str, Callable[..., Any]] = {
        "concurrent": lambda n, u: _concurrent(n, u, args.streams, args.words),
        "cancels": lambda n, u: _cancels(n, u, args.cancels, args.seed),
        "soak": lambda n, u: _soak(n, u, args.soak, args.seed),
        "slow": lambda n, u: _slow(n, u, args.slow_tokens, args.buffer),
        "scale": lambda n, u: _scale(n, u, args.scale_streams, args.scale_words),
    }
    with EmulatorHandle("process", args.words) as emu:
        for run in args.runs:
            rows = []
            for name in args.providers:
                emu.requests()  # forget what came before
                row = asyncio.run(runs[run](name, emu.urls))
                if run == "cancels":
                    # Every request that reached the server ended, by a disconnect or its end.
                    row["server"] = emu.requests()
                print(json.dumps({run: row}), flush=True)
                rows.append(row)
                if run == "concurrent" and args.compare_sdk:
                    sdk = asyncio.run(_concurrent_sdk(name, emu.urls, args.streams, args.words))
                    if sdk is not None:
                        print(json.dumps({run: sdk}), flush=True)
                        rows.append(sdk)
            report[run] = rows
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()

"""compare() over the four providers on the emulator: lanes fail alone, dispose closes them all."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import pytest
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxllm import registry
from rxllm.compare import Comparison, LaneEvent, LaneResult, compare
from rxllm.emulator import Emulator
from rxllm.events import ErrorEvent, FinishReason, StreamEvent, TokenEvent
from rxllm.stream import LLMStream
from rxllm.testing import EMULATOR_KEY

SPECS = {
    "anthropic": "anthropic:claude-haiku-4-5",
    "openai": "openai:gpt-5-mini",
    "gemini": "gemini:gemini-2.5-flash",
    "grok": "grok:grok-4",
}
DIALECT = {"anthropic": "anthropic", "openai": "openai", "gemini": "gemini", "grok": "xai"}


@contextlib.asynccontextmanager
async def bound(
    emulator: Emulator, knobs: dict[str, str]
) -> AsyncIterator[list[registry.BoundModel]]:
    """The four models on the emulator, ``knobs[provider]`` appended to its model after ``~``."""
    models = []
    for name, spec in SPECS.items():
        suffix = f"~{knobs[name]}" if name in knobs else ""
        models.append(
            registry.model(spec + suffix, api_key=EMULATOR_KEY, base_url=emulator.base_url(name))
        )
    try:
        yield models
    finally:
        for model in models:
            await model.provider.aclose()


async def solo_text(emulator: Emulator, name: str, prompt: str) -> str:
    async with bound(emulator, {}) as models:
        (model,) = [m for m in models if m.provider.name == name]
        return await model.generate(prompt)


@pytest.mark.parametrize("failing", list(SPECS))
async def test_a_failing_lane_errs_in_band_and_the_others_finish(
    failing: str, emulator: Emulator
) -> None:
    async with bound(emulator, {failing: "fault=overloaded"}) as models:
        comparison = compare("Tell me about streams", models)
        events: list[LaneEvent] = []
        comparison_done = asyncio.get_running_loop().create_future()
        comparison.subscribe(
            events.append,
            comparison_done.set_exception,
            lambda: comparison_done.set_result(None),
            scheduler=AsyncIOScheduler(asyncio.get_running_loop()),
        )
        await asyncio.wait_for(comparison_done, 30)  # completes: the error did not end it

    failing_lane = f"{SPECS[failing]}~fault=overloaded"
    errors = [e for e in events if isinstance(e.event, ErrorEvent)]
    assert [e.lane for e in errors] == [failing_lane]
    assert errors[0].metrics.error is not None
    assert errors[0].metrics.error.startswith("OverloadedError")
    for name, spec in SPECS.items():
        if name == failing:
            continue
        lane_events = [e for e in events if e.lane == spec]
        text = "".join(e.event.text for e in lane_events if isinstance(e.event, TokenEvent))
        assert text == await solo_text(emulator, name, "Tell me about streams")
        final = comparison.latest[spec]
        assert final.finish_reason is FinishReason.STOP
        assert final.error is None
        assert final.usage is not None
        assert final.usage.completion_tokens > 0
        assert final.usage.prompt_tokens > 0
        assert final.usage.cost is not None


async def test_collect_gives_each_lane_its_text_usage_or_error(emulator: Emulator) -> None:
    async with bound(emulator, {"grok": "fault=invalid_request"}) as models:
        results = await compare("Hi", models, max_tokens=12).collect()
    assert list(results) == [*list(SPECS.values())[:3], "grok:grok-4~fault=invalid_request"]
    for name in ("anthropic", "openai", "gemini"):
        result = results[SPECS[name]]
        assert result.error is None
        assert result.usage is not None
        assert result.usage.completion_tokens == 12
        assert result.metrics.finish_reason is FinishReason.LENGTH
        assert result.metrics.tokens == 12
        assert result.text
    failed = results["grok:grok-4~fault=invalid_request"]
    assert failed.error is not None
    assert failed.error.startswith("InvalidRequestError")
    assert failed.text == ""
    assert failed.usage is None


async def test_disposing_mid_stream_stops_every_lane_and_closes_every_connection(
    emulator: Emulator,
) -> None:
    slow = {name: "tps=20" for name in SPECS}
    async with bound(emulator, slow) as models:
        comparison = compare("A long story please", models)
        tokens: dict[str, int] = dict.fromkeys(comparison.lanes, 0)
        ended: list[str] = []
        streaming = asyncio.Event()

        def on_next(item: LaneEvent) -> None:
            if isinstance(item.event, TokenEvent):
                tokens[item.lane] += 1
                if min(tokens.values()) >= 2:  # every lane is streaming
                    streaming.set()

        subscription = comparison.subscribe(
            on_next,
            lambda error: ended.append(f"error {error!r}"),
            lambda: ended.append("completed"),
            scheduler=AsyncIOScheduler(asyncio.get_running_loop()),
        )
        await asyncio.wait_for(streaming.wait(), 15)
        subscription.dispose()
        records = await emulator.wait_for_disconnects_async(4, timeout=5)
        seen = dict(tokens)
        await asyncio.sleep(0.3)

    assert sorted(r.dialect for r in records) == sorted(DIALECT.values())
    assert all(r.disconnected and not r.completed for r in records)
    assert tokens == seen  # nothing arrives after the dispose
    assert ended == []  # a dispose is not an end
    assert all(m.finish_reason is None for m in comparison.latest.values())


async def test_cancelling_collect_stops_every_lane(emulator: Emulator) -> None:
    slow = {name: "tps=20" for name in SPECS}
    async with bound(emulator, slow) as models:
        task = asyncio.create_task(compare("A long story please", models).collect())
        started = await asyncio.to_thread(
            emulator.state.wait_until, lambda: len(emulator.requests) == 4, 15
        )
        assert started
        await asyncio.sleep(0.3)  # a few tokens into every lane
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        records = await emulator.wait_for_disconnects_async(4, timeout=5)
    assert sorted(r.dialect for r in records) == sorted(DIALECT.values())


async def test_summary_rows_carry_the_metrics(emulator: Emulator) -> None:
    async with bound(emulator, {"openai": "fault=overloaded"}) as models:
        comparison = compare("Hi", models, max_tokens=10)
        await comparison.collect()
    rows = comparison.summary()
    assert [row["lane"] for row in rows] == comparison.lanes
    for row in rows:
        if row["lane"].startswith("openai:"):
            assert row["error"].startswith("OverloadedError")
            assert row["finish_reason"] is None
            assert row["tokens"] == 0
            assert row["ttft_s"] is None
            continue
        assert row["error"] is None
        assert row["finish_reason"] == "length"
        assert row["tokens"] == 10
        assert row["ttft_s"] is not None
        assert 0 < row["ttft_s"] <= row["elapsed_s"]  # the first token came before the end
        assert row["tokens_per_s"] is not None
        assert row["tokens_per_s"] > 0
        assert row["completion_tokens"] == 10
        assert row["total_tokens"] == row["prompt_tokens"] + 10
        assert row["cost_usd"] is not None
        assert row["cost_usd"] > 0
        assert row["elapsed_s"] >= row["ttft_s"]
        assert row["provider"] in SPECS
        assert row["model"] == SPECS[row["provider"]].split(":", 1)[1]


async def test_to_dataframe_when_pandas_is_installed(emulator: Emulator) -> None:
    import pandas as pd

    async with bound(emulator, {}) as models:
        comparison = compare("Hi", models, max_tokens=5)
        await comparison.collect()
    frame = comparison.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == comparison.lanes


def test_to_dataframe_without_pandas_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an absent pandas looks like
    comparison = Comparison({})
    with pytest.raises(ImportError, match="pip install pandas"):
        comparison.to_dataframe()


async def test_a_comparison_is_cold_each_subscription_runs_every_lane(emulator: Emulator) -> None:
    async with bound(emulator, {}) as models:
        comparison = compare("Hi", models, max_tokens=3)
        assert emulator.requests == []  # nothing sent until subscribed
        first = await comparison.collect()
        second = await comparison.collect()
    assert len(emulator.requests) == 8
    assert {k: v.text for k, v in first.items()} == {k: v.text for k, v in second.items()}


def test_compare_checks_its_models() -> None:
    with pytest.raises(ValueError, match="at least one model"):
        compare("Hi", [])
    model = registry.model(SPECS["openai"], api_key="k", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="twice"):
        compare("Hi", [model, model])
    assert isinstance(compare("Hi", [model]), Comparison)


def _fast_and_slow_lanes(release: asyncio.Event) -> Comparison:
    """Two lanes; run n of each streams "x" * n. The slow lane's first run then waits for
    ``release`` and streams " more" before it ends."""
    from rxllm import from_async_iterable

    from .sources import done

    runs = {"test:fast": 0, "test:slow": 0}

    def lane(name: str) -> Observable[StreamEvent]:
        async def run() -> AsyncIterator[StreamEvent]:
            runs[name] += 1
            n = runs[name]
            yield TokenEvent("x" * n)
            if name == "test:slow" and n == 1:
                await release.wait()
                yield TokenEvent(" more")
            yield done()

        return from_async_iterable(run)

    return Comparison({name: lane(name) for name in runs})


def _consistent(results: dict[str, LaneResult]) -> dict[str, tuple[str, int, int]]:
    """Each lane's text, and its metrics' token and char counts (which must match the text)."""
    return {
        name: (result.text, result.metrics.tokens, result.metrics.chars)
        for name, result in results.items()
    }


async def test_concurrent_collects_each_get_their_own_metrics() -> None:
    release = asyncio.Event()
    comparison = _fast_and_slow_lanes(release)

    first = asyncio.create_task(comparison.collect())
    for _ in range(5):
        await asyncio.sleep(0)
    second = await comparison.collect()  # runs whole while the first waits on its slow lane
    release.set()
    first_results = await first

    assert _consistent(first_results) == {"test:fast": ("x", 1, 1), "test:slow": ("x more", 2, 6)}
    assert _consistent(second) == {"test:fast": ("xx", 1, 2), "test:slow": ("xx", 1, 2)}


async def test_latest_and_summary_are_the_latest_subscriptions_alone() -> None:
    release = asyncio.Event()
    comparison = _fast_and_slow_lanes(release)
    first_events: list[LaneEvent] = []
    first_ended = asyncio.Event()
    comparison.subscribe(
        first_events.append,
        on_completed=first_ended.set,
        scheduler=AsyncIOScheduler(asyncio.get_running_loop()),
    )
    for _ in range(5):
        await asyncio.sleep(0)

    await comparison.collect()  # the latest subscription
    release.set()  # the earlier one goes on, after it
    await asyncio.wait_for(first_ended.wait(), 10)

    assert first_events[-1].metrics.tokens == 2  # its own events carry its own metrics
    assert comparison.latest["test:slow"].tokens == 1
    assert [(row["lane"], row["tokens"]) for row in comparison.summary()] == [
        ("test:fast", 1),
        ("test:slow", 1),
    ]


async def test_compare_with_strings_shares_one_provider_per_vendor_and_closes_it(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, EMULATOR_KEY if name.endswith("_API_KEY") else value)
    async with compare(
        "Hi", ["openai:gpt-4o", "openai:gpt-5-mini", "grok:grok-4"], max_tokens=3
    ) as comparison:
        results = await comparison.collect()
        assert all(result.error is None for result in results.values())
        gpt4o, gpt5, grok = (comparison.streams[lane] for lane in comparison.lanes)
        assert isinstance(gpt4o, LLMStream)
        assert isinstance(gpt5, LLMStream)
        assert isinstance(grok, LLMStream)
        assert gpt4o.provider is gpt5.provider  # one connection pool for one vendor
        assert gpt4o.provider._clients  # clients made by the run...
        assert grok.provider._clients
    assert not gpt4o.provider._clients  # ...released on exit
    assert not grok.provider._clients

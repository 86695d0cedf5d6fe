"""UsageTracker: usage totals across requests, by provider, model and tag."""

from __future__ import annotations

from pathlib import Path

import reactivex
from reactivex import Observable

import rxllm
from rxllm import errors, registry
from rxllm.compare import compare
from rxllm.emulator import Emulator
from rxllm.events import DoneEvent, FinishReason, StreamEvent, TokenEvent, Usage
from rxllm.operators import retry_on_interrupt
from rxllm.testing import EMULATOR_KEY
from rxllm.usage import UsageTotals, UsageTracker

from .test_cli import cli_env, run


def done(prompt: int, completion: int, *, cost: float | None = 0.5, **details: object) -> DoneEvent:
    return DoneEvent(
        Usage(prompt, completion, cost=cost), FinishReason.STOP, "m-1", "acme", details=details
    )


def drain(stream: Observable[StreamEvent]) -> list[StreamEvent]:
    seen: list[StreamEvent] = []
    stream.subscribe(seen.append, lambda e: None)
    return seen


def test_totals_are_an_observable_of_snapshots_by_provider_model_and_tag() -> None:
    tracker = UsageTracker()
    snapshots: list[tuple[UsageTotals, ...]] = []
    tracker.totals.subscribe(snapshots.append)

    drain(reactivex.of(TokenEvent("a"), done(10, 5)).pipe(tracker.track(tag="plan")))
    drain(reactivex.of(done(20, 5, cost=1.0)).pipe(tracker.track(tag="plan")))
    drain(reactivex.of(done(1, 1, cost=None)).pipe(tracker.track(tag="qa")))

    assert len(snapshots) == 4  # the empty one on subscribe, then one after each request
    assert snapshots[0] == ()
    plan, qa = snapshots[-1]
    assert (plan.provider, plan.model, plan.tag) == ("acme", "m-1", "plan")
    assert (plan.requests, plan.prompt_tokens, plan.completion_tokens) == (2, 30, 10)
    assert plan.total_tokens == 40
    assert plan.cost == 1.5
    assert qa.tag == "qa"
    assert qa.unpriced_requests == 1
    assert tracker.summary() == [
        {
            "provider": "acme",
            "model": "m-1",
            "tag": "plan",
            "requests": 2,
            "attempts": 2,
            "prompt_tokens": 30,
            "completion_tokens": 10,
            "reasoning_tokens": 0,
            "total_tokens": 40,
            "cost_usd": 1.5,
            "estimated": False,
        },
        {
            "provider": "acme",
            "model": "m-1",
            "tag": "qa",
            "requests": 1,
            "attempts": 1,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "reasoning_tokens": 0,
            "total_tokens": 2,
            "cost_usd": None,
            "estimated": False,
        },
    ]
    assert tracker.total().total_tokens == 42


def test_estimated_usage_is_counted_and_marked() -> None:
    tracker = UsageTracker()
    drain(reactivex.of(done(4, 2, usage_estimated=True)).pipe(tracker.track()))
    drain(reactivex.of(done(4, 2)).pipe(tracker.track()))
    (row,) = tracker.snapshot()
    assert row.requests == 2
    assert row.estimated_requests == 1
    assert row.total_tokens == 12
    assert tracker.summary()[0]["estimated"] is True


def test_a_stream_that_fails_counts_what_it_was_seen_to_use() -> None:
    tracker = UsageTracker()
    cut = reactivex.concat(
        reactivex.of(TokenEvent("a"), TokenEvent("b")),
        reactivex.throw(errors.StreamInterruptedError("dropped")),
    )
    drain(cut.pipe(tracker.track()))
    rejected = reactivex.throw(errors.RateLimitedError("slow down"))
    drain(rejected.pipe(tracker.track()))
    (row,) = tracker.snapshot()
    assert row.requests == 2
    assert row.completion_tokens == 2  # one token a token event; the rejected one is free
    assert row.estimated_requests == 2


def test_a_retried_stream_counts_once_with_its_attempts() -> None:
    tracker = UsageTracker()
    final = done(30, 12, attempts=3, usage_estimated=True)  # retry_on_interrupt's summed done
    drain(reactivex.of(final).pipe(tracker.track()))
    (row,) = tracker.snapshot()
    assert (row.requests, row.attempts, row.total_tokens) == (1, 3, 42)
    assert row.estimated


async def test_retried_attempts_count_once_each(emulator: Emulator) -> None:
    bound = registry.model(
        "openai:gpt-4o~fault=drop,after=3,times=1",
        api_key=EMULATOR_KEY,
        base_url=emulator.base_url("openai"),
    )
    every_attempt = UsageTracker()
    bound.provider.usage_tracker = every_attempt  # every stream of the provider counts
    per_call = UsageTracker()
    try:
        result = await bound.complete(
            "Tell me a story",
            operators=[retry_on_interrupt(3, backoff=0), per_call.track(tag="story")],
        )
    finally:
        await bound.provider.aclose()
    assert len(emulator.requests) == 2
    assert result.details["attempts"] == 2
    (call,) = per_call.snapshot()
    assert (call.requests, call.attempts, call.tag) == (1, 2, "story")
    assert call.total_tokens == result.usage.total_tokens
    assert call.estimated  # the cut attempt's usage is an estimate
    attempts = every_attempt.total()
    assert (attempts.requests, attempts.attempts) == (2, 2)
    assert attempts.estimated_requests == 1
    assert attempts.total_tokens == call.total_tokens  # the same usage, counted once


async def test_compare_counts_every_lane_in_a_tracker(emulator: Emulator) -> None:
    lanes = [
        registry.model(spec, api_key=EMULATOR_KEY, base_url=emulator.base_url(name))
        for name, spec in (("openai", "openai:gpt-4o"), ("anthropic", "anthropic:claude-haiku-4-5"))
    ]
    tracker = UsageTracker()
    try:
        comparison = compare("Hi", lanes, usage_tracker=tracker, tag="cmp", max_tokens=10)
        results = await comparison.collect()
    finally:
        for bound in lanes:
            await bound.provider.aclose()
    rows = {row.provider: row for row in tracker.snapshot()}
    assert set(rows) == {"openai", "anthropic"}
    for row in rows.values():
        assert row.tag == "cmp"
        assert row.requests == 1
    assert tracker.total().total_tokens == sum(
        r.usage.total_tokens for r in results.values() if r.usage
    )


def test_the_cli_compare_prints_the_usage_totals(emulator_thread: Emulator, tmp_path: Path) -> None:
    args = ["compare", "Hi", "--max-tokens", "5", "-m", "openai:gpt-4o"]
    args += ["-m", "anthropic:claude-haiku-4-5"]
    code, _, err = run(args, cli_env(emulator_thread), tmp_path)
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if line.startswith("total usage:")]
    assert "2 requests" in line


def test_the_tracker_is_public() -> None:
    assert rxllm.UsageTracker is UsageTracker

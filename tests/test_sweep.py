"""rxllm.sweep on the local engine, against the emulator: every row recorded (errors as rows),
resumed from the store without repeating a finished row, stopped by its budget, summarized
from the stored rows, and never a key in the store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

import rxllm
from rxllm import registry
from rxllm.emulator import Emulator
from rxllm.errors import ConfigurationError
from rxllm.sweeps import SweepStore, sweep
from rxllm.testing import EMULATOR_KEY

SPECS = {
    "anthropic": "anthropic:claude-haiku-4-5",
    "openai": "openai:gpt-5-mini",
    "gemini": "gemini:gemini-2.5-flash",
    "grok": "grok:grok-4",
}
PROMPTS = [f"Question {i}: what is a stream?" for i in range(20)]
FAST = {"backoff": 0.01, "max_tokens": 12, "progress": False}


@contextlib.asynccontextmanager
async def bound(
    emulator: Emulator, knobs: dict[str, str], *, key: str = EMULATOR_KEY
) -> AsyncIterator[list[registry.BoundModel]]:
    """The four models on the emulator, ``knobs[provider]`` appended after ``~``."""
    models = []
    for name, spec in SPECS.items():
        suffix = f"~{knobs[name]}" if name in knobs else ""
        models.append(registry.model(spec + suffix, api_key=key, base_url=emulator.base_url(name)))
    try:
        yield models
    finally:
        for model in models:
            await model.provider.aclose()


def prompt_of(body: dict[str, object]) -> str:
    """The prompt a recorded request carried, whatever the dialect."""
    text = json.dumps(body)
    (found,) = {p for p in PROMPTS if json.dumps(p)[1:-1] in text}
    return found


def stored(db: Path) -> list[dict[str, object]]:
    """The rows in the store; none while the sweep has not made it yet (read-only: a
    poll must not create the file before the sweep does)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM rows")]
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):  # created, its table not yet
                return []
            raise


async def eventually(predicate: Callable[[], bool], within: float = 30.0) -> None:
    """Wait (off the loop) until ``predicate()`` holds; fail after ``within`` seconds."""

    def poll() -> bool:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    assert await asyncio.to_thread(poll), "the condition never held"


FAULTS = {
    "anthropic": "fault=context_too_long,times=5",  # 5 rows fail for good
    "openai": "fault=drop,after=2,times=4",  # 4 streams cut mid-reply, resumed
    "gemini": "fault=rate_limited,retry_after=0.01,times=3",  # 3 refused, retried
    "grok": "fault=server_error,times=2",  # 2 failed, retried
}


async def test_four_providers_with_faults_record_every_row_with_errors_as_rows(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "results.sqlite"
    async with bound(emulator, FAULTS) as models:
        result = await sweep(PROMPTS, models, db=db, **FAST)

    assert result.complete
    assert result.ran == 80
    assert result.skipped == 0
    rows = stored(db)
    assert len(rows) == 80
    by_model = Counter((r["provider"], r["status"]) for r in rows)
    assert by_model == {
        ("anthropic", "ok"): 15,
        ("anthropic", "error"): 5,
        ("openai", "ok"): 20,
        ("gemini", "ok"): 20,
        ("grok", "ok"): 20,
    }
    errors = [r for r in rows if r["status"] == "error"]
    assert {r["error_class"] for r in errors} == {"ContextTooLongError"}
    assert all("anthropic:claude-haiku-4-5" in str(r["error_message"]) for r in errors)
    assert all(r["attempts"] == 1 for r in errors)  # not retryable: tried once
    # Each prompt x model once, and the retries where the faults were.
    assert sorted((r["prompt_index"], r["provider"]) for r in rows) == sorted(
        (i, p) for i in range(20) for p in SPECS
    )
    attempts = Counter((r["provider"], r["attempts"]) for r in rows if r["status"] == "ok")
    assert attempts[("openai", 2)] == 4
    assert attempts[("gemini", 2)] == 3
    assert attempts[("grok", 2)] == 2
    seen = Counter(r.dialect for r in emulator.requests)
    assert seen == {"anthropic": 20, "openai": 24, "gemini": 23, "xai": 22}
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["text"] and r["finish_reason"] == "length" for r in ok)
    assert all(r["completion_tokens"] == 12 and r["cost_usd"] > 0 for r in ok)
    assert all(r["ttft_s"] is not None and r["ttft_s"] >= 0 for r in ok)
    # A resumed reply is the same text as an uninterrupted one.
    plain = {r["prompt"]: r["text"] for r in ok if r["provider"] == "gemini"}
    assert len(plain) == 20


async def test_the_summary_matches_the_stored_rows(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    async with bound(emulator, FAULTS) as models:
        result = await sweep(PROMPTS[:10], models, db=db, **FAST)

    rows = stored(db)
    summary = {s["model"]: s for s in result.summary()}
    assert list(summary) == [m.spec for m in models]
    for model, entry in summary.items():
        mine = [r for r in rows if r["model"] == model]
        ok = [r for r in mine if r["status"] == "ok"]
        assert entry["rows"] == len(mine) == 10
        assert entry["ok"] == len(ok)
        assert entry["success_rate"] == len(ok) / len(mine)
        ttft = [float(r["ttft_s"]) for r in ok]  # type: ignore[arg-type]
        assert entry["ttft_p50_s"] == pytest.approx(np.percentile(ttft, 50))
        assert entry["ttft_p95_s"] == pytest.approx(np.percentile(ttft, 95))
        speeds = [float(r["tokens_per_s"]) for r in ok]  # type: ignore[arg-type]
        assert entry["tokens_per_s_p50"] == pytest.approx(np.percentile(speeds, 50))
        assert entry["cost_usd"] == pytest.approx(sum(float(r["cost_usd"]) for r in mine))  # type: ignore[arg-type]
        assert entry["cost_per_row_usd"] == pytest.approx(entry["cost_usd"] / 10)
        assert entry["errors_by_class"] == dict(
            Counter(str(r["error_class"]) for r in mine if r["status"] != "ok")
        )
    assert summary[models[0].spec]["errors_by_class"] == {"ContextTooLongError": 5}
    # The table, the summary table and the plots.
    frame = result.to_dataframe()
    assert len(frame) == 40
    assert set(frame["status"]) == {"ok", "error"}
    table = result.summary_dataframe()
    assert list(table.index) == [m.spec for m in models]
    assert table.loc[models[0].spec, "errors"] == 5
    figure = result.plot()
    axes = figure.get_axes()
    assert [ax.get_xlabel() for ax in axes] == ["time to first token (s)", "tokens per second"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == [m.spec for m in models]
    assert "40 rows" in figure._suptitle.get_text()


async def test_a_rerun_skips_finished_rows_and_retries_failed_ones_only_on_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "results.sqlite"
    async with bound(emulator, {"anthropic": "fault=context_too_long,times=3"}) as models:
        first = await sweep(PROMPTS[:5], models, db=db, **FAST)
        assert (first.ran, len(first.failed)) == (20, 3)
        before = len(emulator.requests)

        again = await sweep(PROMPTS[:5], models, db=db, **FAST)
        assert (again.ran, again.skipped, len(emulator.requests)) == (0, 20, before)
        assert again.rows == first.rows

        failed_prompts = {r["prompt"] for r in first.failed}
        retried = await sweep(PROMPTS[:5], models, db=db, retry_failed=True, **FAST)
    assert (retried.ran, retried.skipped) == (3, 17)
    new = emulator.requests[before:]
    assert len(new) == 3
    assert {prompt_of(r.body) for r in new} == failed_prompts
    assert {r.dialect for r in new} == {"anthropic"}
    assert retried.failed == []
    assert len(stored(db)) == 20


async def test_the_budget_stops_new_rows_and_a_rerun_with_more_continues(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "results.sqlite"
    async with bound(emulator, {}) as models:
        (gpt,) = [m for m in models if m.provider.name == "openai"]
        probe = await sweep(PROMPTS[:1], [gpt], db=":memory:", **FAST)
        cost = probe.rows[0]["cost_usd"]
        emulator.reset()

        capped = await sweep(PROMPTS, [gpt], db=db, max_cost=3.5 * cost, concurrency=1, **FAST)
        assert capped.stopped is not None
        assert "budget" in capped.stopped
        assert not capped.complete
        assert capped.ran + capped.not_started == 20
        # Every row started was sent and stored; none started once the cap was reached.
        assert len(emulator.requests) == capped.ran == len(stored(db)) == 4
        costs = [r["cost_usd"] for r in capped.rows]
        assert sum(costs[:-1]) < 3.5 * cost <= sum(costs)

        same = await sweep(PROMPTS, [gpt], db=db, max_cost=3.5 * cost, concurrency=1, **FAST)
        assert same.ran == 0
        assert same.stopped
        assert len(emulator.requests) == 4

        more = await sweep(PROMPTS, [gpt], db=db, **FAST)
    assert more.complete
    assert more.ran == 16
    assert more.skipped == 4
    assert sorted(prompt_of(r.body) for r in emulator.requests) == sorted(PROMPTS)


async def test_cancelling_a_sweep_closes_its_streams_and_keeps_the_finished_rows(
    emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "results.sqlite"
    async with bound(emulator, {"openai": "tps=40"}) as models:
        (gpt,) = [m for m in models if m.provider.name == "openai"]
        (claude,) = [m for m in models if m.provider.name == "anthropic"]
        task = asyncio.ensure_future(
            sweep(PROMPTS[:4], [claude, gpt], db=db, concurrency=2, **FAST).run()
        )
        await eventually(lambda: sum(r.dialect == "openai" for r in emulator.requests) == 2)
        await eventually(lambda: len(stored(db)) == 4)  # Claude's rows (no pacing) finish first
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gone = await emulator.wait_for_disconnects_async(2)
    assert {r.dialect for r in gone} == {"openai"}
    assert {r["provider"] for r in stored(db)} == {"anthropic"}


async def test_the_store_never_holds_an_api_key(emulator: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    wrong = "sk-not-the-emulator-key-987654321"
    async with bound(emulator, {}) as good, bound(emulator, {}, key=wrong) as bad:
        await sweep(PROMPTS[:2], [good[1], bad[0], bad[3]], db=db, **FAST)
    rows = stored(db)
    assert Counter(r["status"] for r in rows) == {"ok": 2, "error": 4}
    assert {r["error_class"] for r in rows if r["status"] == "error"} == {"AuthenticationError"}
    for path in await asyncio.to_thread(lambda: list(tmp_path.iterdir())):  # the db and its WAL
        data = await asyncio.to_thread(path.read_bytes)
        assert EMULATOR_KEY.encode() not in data, path.name
        assert wrong.encode() not in data, path.name


async def test_prompts_come_from_jsonl_csv_parquet_and_a_pandas_column(
    emulator: Emulator, tmp_path: Path
) -> None:
    import pandas as pd  # a dev dependency (with pyarrow, for Parquet): never skipped

    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps("Question 0: what is a stream?")
        + "\n"
        + json.dumps({"id": 7, "prompt": "Question 1: what is a stream?", "max_tokens": 3})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "Question 2: what is a stream?"}]})
        + "\n"
    )
    csv = tmp_path / "p.csv"
    csv.write_text("id,prompt\n1,Question 3: what is a stream?\n2,Question 4: what is a stream?\n")
    async with bound(emulator, {}) as models:
        gpt = models[1]
        from_jsonl = await sweep(jsonl, [gpt], db=tmp_path / "a.sqlite", **FAST)
        from_csv = await sweep(str(csv), [gpt], db=tmp_path / "b.sqlite", **FAST)
        column = pd.DataFrame({"prompt": PROMPTS[5:7]})["prompt"]
        from_pandas = await sweep(column, [gpt], db=tmp_path / "c.sqlite", **FAST)
        parquet = tmp_path / "p.parquet"
        pd.DataFrame({"id": [1, 2], "prompt": PROMPTS[7:9]}).to_parquet(parquet)
        from_parquet = await sweep(parquet, [gpt], db=tmp_path / "d.sqlite", **FAST)
    assert [r["prompt"] for r in from_jsonl.rows] == PROMPTS[:3]
    assert [r["completion_tokens"] for r in from_jsonl.rows] == [12, 3, 12]  # its own field
    assert [r["prompt"] for r in from_csv.rows] == PROMPTS[3:5]
    assert [r["prompt"] for r in from_pandas.rows] == PROMPTS[5:7]
    assert [r["prompt"] for r in from_parquet.rows] == PROMPTS[7:9]


async def test_bad_input_raises_before_any_request(emulator: Emulator, tmp_path: Path) -> None:
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('"ok"\n{"prompt": \n')
    async with bound(emulator, {}) as models:
        with pytest.raises(ValueError, match="at least one model"):
            sweep(PROMPTS, [])
        with pytest.raises(ValueError, match="at least one prompt"):
            sweep([], models)
        with pytest.raises(FileNotFoundError, match="no prompts file"):
            sweep(str(tmp_path / "missing.jsonl"), models)
        with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
            sweep(bad_line, models)
        with pytest.raises(ValueError, match="concurrency"):
            sweep(PROMPTS, models, concurrency=0)
        with pytest.raises(ValueError, match="max_cost"):
            sweep(PROMPTS, models, max_cost=0)
        with pytest.raises(ValueError, match="engine"):
            sweep(PROMPTS, models, engine="spark")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="unknown model"):
            sweep(PROMPTS, ["openai:gpt-nonexistent"])
        with pytest.raises(ValueError, match="twice"):
            sweep(PROMPTS, [models[0], models[0]])
    assert emulator.requests == []


async def test_progress_draws_on_the_terminal_and_ends_with_the_final_counts(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with bound(emulator, {"anthropic": "fault=overloaded"}) as models:
        await sweep(PROMPTS[:3], models[:2], db=":memory:", **{**FAST, "progress": True})
    err = capsys.readouterr().err
    assert "rxllm sweep · 6/6 rows · spent $" in err
    assert "anthropic:claude-haiku-4-5~fault=overloaded" in err
    assert "3/3 · 3 failed" in err
    assert "3/3 · 0 failed" in err


def test_a_script_runs_a_sweep_with_run_sync(emulator_thread: Emulator, tmp_path: Path) -> None:
    gpt = rxllm.model(
        SPECS["openai"], api_key=EMULATOR_KEY, base_url=emulator_thread.base_url("openai")
    )
    result = sweep(PROMPTS[:3], [gpt], db=tmp_path / "r.sqlite", **FAST).run_sync()
    gpt.provider.close()
    with SweepStore(tmp_path / "r.sqlite") as store:
        assert result.ran == 3
        assert len(store.rows()) == 3


async def test_the_rate_limit_holds_the_rows_a_provider_may_start(
    emulator: Emulator, tmp_path: Path
) -> None:
    limit = 3  # per minute: a fourth request only 20 s after the first three
    async with bound(emulator, {}) as models:
        gpt, claude = models[1], models[0]
        run = sweep(
            PROMPTS[:8],
            [gpt, claude],
            db=tmp_path / "r.sqlite",
            rate_limits={"openai": {"requests_per_minute": limit}},
            **FAST,
        )
        task = asyncio.ensure_future(run.run())
        await eventually(lambda: len(stored(tmp_path / "r.sqlite")) == 8 + limit)
        await asyncio.sleep(0.5)  # room for a fourth request, which the limit must hold back
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Claude (no limit) ran all its rows; OpenAI only as many as the limit allowed.
    assert Counter(r.dialect for r in emulator.requests) == {"anthropic": 8, "openai": limit}

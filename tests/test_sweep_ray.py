"""``engine="ray"`` on a local Ray instance (2 CPUs) against the emulator: the rate limit holds
across 2 workers (counted at the emulator), and a budget-stopped sweep resumes into the same
store without repeating a finished row.

Ray is slow to start on a small machine, so the module shares one Ray session and keeps to
two tests. Ray is started before the emulator: its processes are forked, and gRPC (the
emulator's xAI server) warns against forking while its threads run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections import Counter
from collections.abc import Iterator

import pytest
import ray  # a dev dependency: these tests always run, never skip

import rxllm
from rxllm.emulator import Emulator
from rxllm.sweeps import sweep
from rxllm.testing import EMULATOR_KEY

# Ray starts its daemons with subprocess.Popen and drops some of those objects while the
# daemons run (they live until ray.shutdown); Python warns when such an object is collected
# (ResourceWarning: "subprocess N is still running"), whenever the collector runs. That is
# Ray's bookkeeping, not a leak of rxllm's: ignored here, and collected at the module's end.
RAY_POPEN = r"ignore:subprocess \d+ is still running:ResourceWarning"
pytestmark = pytest.mark.filterwarnings(RAY_POPEN)

PROMPTS = [f"Ray question {i}: what is backpressure?" for i in range(10)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Emulator]:
    """A local Ray instance with 2 CPUs, then an emulator on a background thread."""
    options = {
        "num_cpus": 2,
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    try:
        ray.init(**options)
    except Exception:
        # Starting Ray's own processes on a loaded 2-core machine has failed once (its raylet
        # timed out): that is the machine, not rxllm. Start it once more; a second failure fails.
        ray.shutdown()
        ray.init(**options)
    try:
        with Emulator(api_key=EMULATOR_KEY) as emu:
            yield emu
    finally:
        ray.shutdown()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"subprocess \d+ is still running", ResourceWarning)
            gc.collect()  # Ray's dropped Popen objects, now (see RAY_POPEN)


@pytest.fixture
def emu(cluster: Emulator) -> Emulator:
    cluster.reset()
    return cluster


def secrets(emu: Emulator) -> dict[str, object]:
    """What the workers get: the keys as runtime-environment variables, never in code."""
    keys = {k: v for k, v in emu.env().items() if k.endswith("_API_KEY")}
    return {"runtime_env": {"env_vars": keys}}


def model(emu: Emulator, spec: str) -> rxllm.BoundModel:
    vendor = spec.split(":", 1)[0]
    return rxllm.model(spec, api_key=EMULATOR_KEY, base_url=emu.base_url(vendor))


def prompt_of(body: dict[str, object]) -> str:
    text = json.dumps(body)
    (found,) = {p for p in PROMPTS if p in text}
    return found


async def test_the_rate_limit_holds_across_two_ray_workers(emu: Emulator) -> None:
    gpt = model(emu, "openai:gpt-5-mini")
    limit = 3  # per minute: one more request only 20 s after the first three
    run = sweep(
        PROMPTS,
        [gpt],
        db=":memory:",
        engine="ray",
        workers=2,
        rate_limits={"openai": {"requests_per_minute": limit}},
        ray_options=secrets(emu),
        max_tokens=5,
        progress=False,
    )
    task = asyncio.ensure_future(run.run())
    done = await asyncio.to_thread(
        emu.state.wait_until,
        lambda: sum(r.ended is not None for r in emu.requests) >= limit,
        60,
    )
    assert done
    await asyncio.sleep(1.0)  # room for a fourth request, which the limit must hold back
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await gpt.provider.aclose()
    # Ten rows over two workers asked at once; the first minute's window admitted three.
    assert len(emu.requests) == limit
    assert len(run.ray_stats["askers"]) == 2  # both workers waited on the one limit
    assert run.ray_stats["granted"] == limit


async def test_a_budget_stopped_ray_sweep_resumes_without_repeating_finished_rows(
    emu: Emulator, tmp_path: object
) -> None:
    db = f"{tmp_path}/ray.sqlite"
    claude = model(emu, "anthropic:claude-haiku-4-5~fault=drop,after=2,times=2")
    gpt = model(emu, "openai:gpt-5-mini")
    common = {
        "db": db,
        "engine": "ray",
        "workers": 2,
        "concurrency": 1,
        "backoff": 0.01,
        "ray_options": secrets(emu),
        "max_tokens": 12,
        "progress": False,
    }
    probe = await sweep(PROMPTS[:1], [gpt], **{**common, "db": ":memory:"})  # type: ignore[arg-type]
    row_cost = probe.rows[0]["cost_usd"]
    emu.reset()

    capped = await sweep(PROMPTS, [claude, gpt], max_cost=4 * row_cost, **common)  # type: ignore[arg-type]
    assert capped.stopped is not None
    assert "budget" in capped.stopped
    assert 0 < capped.ran < 20
    assert capped.not_started == 20 - capped.ran
    first = {(r["provider"], r["prompt"]): r["attempts"] for r in capped.rows}

    resumed = await sweep(PROMPTS, [claude, gpt], **common)  # type: ignore[arg-type]
    await claude.provider.aclose()
    await gpt.provider.aclose()
    assert resumed.complete
    assert resumed.skipped == capped.ran
    assert len(resumed.rows) == 20
    assert all(r["status"] == "ok" for r in resumed.rows)
    assert len({r["worker"] for r in resumed.rows}) >= 2  # spread over the workers
    sent = Counter((r.dialect, prompt_of(r.body)) for r in emu.requests)
    for (provider, prompt), attempts in first.items():  # never asked again
        assert sent[(provider, prompt)] == attempts
    # Each row once, plus the resumed attempts of the streams the fault cut.
    assert sum(sent.values()) == sum(r["attempts"] for r in resumed.rows) > 20

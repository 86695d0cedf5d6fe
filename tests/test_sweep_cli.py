"""``rxllm sweep`` as a subprocess against an emulator in the test process: killed with SIGKILL
mid-run and run again, it completes without repeating a finished row (the emulator's request
log proves it); ``--summary`` prints the stored rows' numbers; ``--max-cost`` stops it."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

from rxllm.emulator import Emulator

from .test_cli import DEADLINE, cli_env, run, start
from .test_sweep import stored

PROMPTS = [f"Sweep question {i}: why stream?" for i in range(12)]
PACED = "~tps=80,words=20"  # a quarter of a second a row: the kill lands mid-run
MODELS = ["anthropic:claude-haiku-4-5" + PACED, "openai:gpt-5-mini" + PACED]
DIALECTS = {"anthropic": "anthropic", "openai": "openai"}


def write_prompts(path: Path) -> Path:
    path.write_text(
        "".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in enumerate(PROMPTS))
    )
    return path


def prompt_of(body: dict[str, object]) -> str:
    text = json.dumps(body)
    (found,) = {p for p in PROMPTS if p in text}
    return found


def test_a_killed_sweep_rerun_completes_without_repeating_finished_rows(
    emulator_thread: Emulator, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    db = tmp_path / "results.sqlite"
    env = cli_env(emulator_thread)
    args = ["sweep", str(prompts), "--db", str(db), "--concurrency", "2"]
    for model in MODELS:
        args += ["-m", model]

    process = start(args, env, tmp_path)
    deadline = time.monotonic() + DEADLINE
    while len(stored(db)) < 6 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=DEADLINE)
    assert process.returncode == -signal.SIGKILL
    finished_first = {(r["provider"], r["prompt"]) for r in stored(db)}
    assert 6 <= len(finished_first) < 24  # killed mid-run, its finished rows kept
    emulator_thread.wait_for_idle(DEADLINE)  # the killed streams' connections closed
    first_workers = {r["worker"] for r in stored(db)}

    code, out, err = run(args, env, tmp_path, timeout=DEADLINE)
    assert code == 0, err
    assert f"ran {24 - len(finished_first)} rows, {len(finished_first)} already in the store" in err

    rows = stored(db)
    assert len(rows) == 24
    assert all(r["status"] == "ok" for r in rows)
    assert {(r["provider"], r["prompt"]) for r in rows} == {
        (p, q) for p in DIALECTS for q in PROMPTS
    }
    assert len({r["worker"] for r in rows} - first_workers) == 1  # the rest by the rerun
    sent = Counter((r.dialect, prompt_of(r.body)) for r in emulator_thread.requests)
    for provider, prompt in finished_first:  # a finished row is never asked again
        assert sent[(DIALECTS[str(provider)], prompt)] == 1
    # Only the rows in flight when the process died were sent twice: at most
    # --concurrency per provider.
    assert sum(sent.values()) - 24 <= 4
    assert all(count in (1, 2) for count in sent.values())
    for model in MODELS:  # the final table
        assert model in out

    code, summary, err = run(["sweep", "--summary", str(db)], env, tmp_path)
    assert code == 0, err
    assert f"{db} · 24 rows" in summary
    for model in MODELS:
        line = next(line for line in summary.splitlines() if model in line)
        cells = [c.strip() for c in line.split("│") if c.strip()]
        assert cells[1:5] == ["12", "12", "0", "100%"]
        cost = sum(float(str(r["cost_usd"])) for r in rows if r["model"] == model)
        assert cells[8] == f"{cost:.6f}"


def test_max_cost_stops_the_command_and_says_how_to_continue(
    emulator_thread: Emulator, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    db = tmp_path / "capped.sqlite"
    args = ["sweep", str(prompts), "-m", "openai:gpt-5-mini", "--db", str(db)]
    code, _, err = run(
        [*args, "--max-cost", "0.00001", "--concurrency", "1"], cli_env(emulator_thread), tmp_path
    )
    assert code == 1
    assert "stopped: budget $1e-05 reached" in err
    assert "11 rows not started: raise --max-cost and run the same command again" in err
    assert len(emulator_thread.requests) == len(stored(db)) == 1

    code, _, err = run(["sweep", "-m", "openai:gpt-5-mini"], cli_env(emulator_thread), tmp_path)
    assert code == 2
    assert "rxllm sweep needs a prompts file" in err
    code, _, err = run(["sweep", "--summary", str(tmp_path / "none.sqlite")], cli_env(), tmp_path)
    assert code == 2
    assert "no sweep store" in err

"""The ``rxllm`` command, run as a subprocess against an emulator in the test process.

The CLI is pointed at the emulator through the providers' own environment
variables (``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY``...), exactly as a user
would point it at any endpoint; with no key at all it starts its own emulator.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rxllm
from rxllm import registry
from rxllm.emulator import Emulator
from rxllm.testing import EMULATOR_KEY

MODELS = {
    "anthropic": "anthropic:claude-haiku-4-5",
    "openai": "openai:gpt-5-mini",
    "gemini": "gemini:gemini-2.5-flash",
    "grok": "grok:grok-4",
}
_CLEARED = ("_API_KEY", "_BASE_URL")
SLOW_AND_LONG = "~tps=10,words=2000"
"""Emulator knobs for a reply that only Ctrl-C ends: minutes long, on any machine."""
DEADLINE = 60
"""Seconds to wait for what must happen; a loaded machine is slow, never this slow."""


def cli_env(emu: Emulator | None = None, *, key: str = EMULATOR_KEY) -> dict[str, str]:
    """The environment without any provider key or URL (or rxllm setting), then ``emu``'s."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(_CLEARED) and not name.startswith("RXLLM_") and name != "COLUMNS"
    }
    if emu is not None:
        for name, value in emu.env().items():
            env[name] = key if name.endswith("_API_KEY") else value
    return env


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rxllm.cli", *args],
        env=env,
        cwd=cwd,  # no rxllm.toml or pyproject settings from the repository
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> tuple[int, str, str]:
    process = start(args, env, cwd)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out.decode(), err.decode()


def expected(emu: Emulator, spec: str, prompt: str, **fields: object) -> rxllm.StreamResult:
    """What the same request gives through the library (the emulator is deterministic)."""
    name = spec.split(":", 1)[0]

    async def go() -> rxllm.StreamResult:
        bound = registry.model(spec, api_key=EMULATOR_KEY, base_url=emu.base_url(name))
        try:
            return await rxllm.collect(bound.stream(prompt, **fields))
        finally:
            await bound.provider.aclose()

    return asyncio.run(go())


def expected_text(emu: Emulator, spec: str, prompt: str, **fields: object) -> str:
    return expected(emu, spec, prompt, **fields).text


@pytest.mark.parametrize("provider", list(MODELS))
def test_stream_prints_exactly_the_reply_and_a_usage_line(
    provider: str, emulator_thread: Emulator, tmp_path: Path
) -> None:
    spec = MODELS[provider]
    code, out, err = run(
        ["stream", "Say hello", "-m", spec, "--max-tokens", "20"],
        cli_env(emulator_thread),
        tmp_path,
    )
    assert code == 0, err
    assert out == expected_text(emulator_thread, spec, "Say hello", max_tokens=20) + "\n"
    assert f"{provider}: API key found, using" in err  # it says where requests go
    usage = [line for line in err.splitlines() if "usage:" in line]
    assert len(usage) == 1
    assert "prompt +" in usage[0]
    assert "20 completion" in usage[0]
    assert "$" in usage[0]  # the catalog knows the price
    assert "length" in usage[0]  # finish reason: max tokens reached
    assert "Traceback" not in err


def test_stream_shows_reasoning_apart_from_the_reply(
    emulator_thread: Emulator, tmp_path: Path
) -> None:
    spec = MODELS["anthropic"]
    code, out, err = run(
        ["stream", "Why?", "-m", spec, "--reasoning"], cli_env(emulator_thread), tmp_path
    )
    assert code == 0, err
    # stdout is only the answer; the thinking is on stderr, marked, before the usage
    result = expected(emulator_thread, spec, "Why?", reasoning=True)
    assert result.reasoning
    assert out == result.text + "\n"
    assert "thinking: " + result.reasoning in err
    assert result.reasoning not in out
    assert "(reasoning" in err  # usage names the reasoning tokens


def test_compare_prints_every_lane_text_and_a_metrics_table(
    emulator_thread: Emulator, tmp_path: Path
) -> None:
    args = ["compare", "Compare us", "--max-tokens", "15"]
    for spec in MODELS.values():
        args += ["-m", spec]
    code, out, err = run(args, cli_env(emulator_thread), tmp_path)
    assert code == 0, err
    for spec in MODELS.values():
        text = expected_text(emulator_thread, spec, "Compare us", max_tokens=15)
        assert text in out, spec
        # the lane's row in the table: its name, its token count, the finish reason
        row = next(line for line in out.splitlines() if line.startswith(f"│ {spec} "))
        assert "│ 15 " in row
        assert "length" in row
    assert "ttft_s" in out
    assert "tokens_per_s" in out
    assert "cost_usd" in out
    assert len(emulator_thread.requests) == 4 + 4  # the CLI's, and expected_text's


def test_compare_with_a_failing_lane_shows_its_error_and_exits_non_zero(
    emulator_thread: Emulator, tmp_path: Path
) -> None:
    args = ["compare", "Hi", "--max-tokens", "10", "-m", MODELS["openai"]]
    args += ["-m", "gemini:gemini-2.5-flash~fault=overloaded"]
    code, out, err = run(args, cli_env(emulator_thread), tmp_path)
    assert code == 1
    assert expected_text(emulator_thread, MODELS["openai"], "Hi", max_tokens=10) in out
    assert "OverloadedError" in out  # in its lane and in the table
    assert "gemini:gemini-2.5-flash~fault=overloaded: OverloadedError" in err
    assert "Traceback" not in err


def test_models_lists_the_catalog(tmp_path: Path) -> None:
    code, out, err = run(["models"], cli_env(), tmp_path)
    assert code == 0, err
    for spec in MODELS.values():
        assert spec in out
    assert "claude-sonnet-4-6 (default)" in out
    code, out, _ = run(["models", "xai"], cli_env(), tmp_path)
    assert code == 0
    assert "grok:grok-4" in out
    assert "anthropic:" not in out


@pytest.mark.parametrize(
    ("key", "model", "error"),
    [
        (EMULATOR_KEY, "anthropic:claude-haiku-4-5~fault=invalid_request", "InvalidRequestError"),
        ("sk-wrong-key", "openai:gpt-5-mini", "AuthenticationError"),
        (EMULATOR_KEY, "grok:grok-4~fault=rate_limited", "RateLimitedError"),
    ],
)
def test_an_error_is_one_readable_line_and_a_non_zero_exit(
    key: str, model: str, error: str, emulator_thread: Emulator, tmp_path: Path
) -> None:
    code, out, err = run(["stream", "Hi", "-m", model], cli_env(emulator_thread, key=key), tmp_path)
    assert code == 1
    assert out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {error}: ")
    assert "Traceback" not in err
    assert key not in err  # the key never prints


def test_debug_shows_the_traceback(emulator_thread: Emulator, tmp_path: Path) -> None:
    model = "anthropic:claude-haiku-4-5~fault=invalid_request"
    for args in (
        ["--debug", "stream", "Hi", "-m", model],
        ["stream", "Hi", "-m", model, "--debug"],
    ):
        code, _, err = run(args, cli_env(emulator_thread), tmp_path)
        assert code != 0
        assert "Traceback (most recent call last)" in err
        assert "rxllm.errors.InvalidRequestError" in err


def test_a_bad_model_string_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = run(["stream", "Hi", "-m", "nope:model"], cli_env(), tmp_path)
    assert code == 2
    assert "error: ConfigurationError: unknown provider 'nope'" in err
    assert "Traceback" not in err
    assert "emulator" not in err  # checked before anything started
    assert out == ""


def test_without_keys_every_provider_uses_the_emulator_and_says_so(tmp_path: Path) -> None:
    args = ["compare", "Hi", "--max-tokens", "8"]
    for spec in MODELS.values():
        args += ["-m", spec]
    code, out, err = run(args, cli_env(), tmp_path)
    assert code == 0, err
    for name, variable in [
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
        ("gemini", "GEMINI_API_KEY or GOOGLE_API_KEY"),
        ("grok", "XAI_API_KEY"),
    ]:
        assert f"{name}: no {variable} set, using the local emulator at " in err
    for spec in MODELS.values():
        row = next(line for line in out.splitlines() if line.startswith(f"│ {spec} "))
        assert "length" in row


def test_emulate_forces_the_emulator_even_with_keys(
    emulator_thread: Emulator, tmp_path: Path
) -> None:
    code, out, err = run(
        ["stream", "Hi", "-m", MODELS["grok"], "--max-tokens", "5", "--emulate"],
        cli_env(emulator_thread),
        tmp_path,
    )
    assert code == 0, err
    assert "grok: asked to emulate, using the local emulator at" in err
    assert out.strip()
    assert emulator_thread.requests == []  # its own emulator, not the one in the environment


@pytest.mark.parametrize("provider", list(MODELS))
def test_ctrl_c_stops_the_stream_closes_the_connection_and_prints_partial_usage(
    provider: str, emulator_thread: Emulator, tmp_path: Path
) -> None:
    # The behaviour, not the machine's speed: a reply long enough (minutes at 10 tokens/s)
    # that only Ctrl-C can end it, and deadlines generous enough for a loaded machine.
    spec = MODELS[provider] + SLOW_AND_LONG
    process = start(
        ["stream", "Tell me a long story", "-m", spec], cli_env(emulator_thread), tmp_path
    )
    try:
        assert process.stdout is not None
        first = process.stdout.read(1)  # the first token has arrived
        assert first
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert (first + out).decode("utf-8", "replace").strip()
    stderr = err.decode()
    assert "stopped · partial usage:" in stderr
    assert "(estimated)" in stderr
    assert "Traceback" not in stderr
    # the server saw the client go away, before the reply was complete
    (record,) = emulator_thread.wait_for_disconnects(1, timeout=DEADLINE)
    assert record.disconnected
    assert not record.completed


def test_ctrl_c_stops_every_lane_of_a_compare(emulator_thread: Emulator, tmp_path: Path) -> None:
    args = ["compare", "Tell me a long story"]
    for spec in MODELS.values():
        args += ["-m", spec + SLOW_AND_LONG]
    process = start(args, cli_env(emulator_thread), tmp_path)
    try:
        deadline = time.monotonic() + DEADLINE
        while not (
            len(emulator_thread.requests) == 4
            and all(r.events_sent >= 3 for r in emulator_thread.requests)
        ):
            assert time.monotonic() < deadline, "the lanes did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    records = emulator_thread.wait_for_disconnects(4, timeout=DEADLINE)
    assert sorted(r.dialect for r in records) == ["anthropic", "gemini", "openai", "xai"]
    assert not any(r.completed for r in records)  # every lane was cut before its reply ended
    stderr = err.decode()
    for spec in MODELS.values():
        assert f"{spec}{SLOW_AND_LONG} stopped · partial usage:" in stderr
        assert f"│ {spec}{SLOW_AND_LONG} " in out.decode()  # the table of what each lane had

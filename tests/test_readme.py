"""The README's promises: two set-up commands, and an example that runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_readme_opens_with_exactly_two_set_up_commands() -> None:
    opening = README.split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", opening, re.S)
    assert len(commands) == 2
    main_job, tests = commands
    assert main_job.startswith("python3 -m venv .venv && ")
    assert tests.startswith("python3 -m venv .venv && ")
    assert tests.endswith("tools/check.py")
    assert "rxllm compare" in main_job


def test_the_readme_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", README, re.S)
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Hello, world: token_limit 10"
    assert out[1].startswith("Usage(prompt_tokens=")
    assert out[1].endswith(" length")  # the reply is cut at max_tokens=40

"""The README's promises: two set-up commands, and an example that runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
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


EXAMPLES = re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_readme_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    example, _ = EXAMPLES
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Hello, world: token_limit 10"
    assert out[1].startswith("Usage(prompt_tokens=")
    assert out[1].endswith(" length")  # the reply is cut at max_tokens=40


def test_the_readmes_one_spec_vendor_is_a_working_vendor(tmp_path: Path) -> None:
    """The layout section's claim: registering that spec is all a compatible vendor needs.
    In a fresh interpreter, since registering is for the whole process."""
    _, spec_example = EXAMPLES
    check = (
        "import rxllm\n" + spec_example + "bound = rxllm.model('acme:acme-large', api_key='k')\n"
        "print(rxllm.provider_names()[-1], bound.provider.base_url,"
        " type(bound.provider).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["acme", "https://api.acme.example/v1", "OpenAIProvider"]

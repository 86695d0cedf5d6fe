"""Run every quality gate in order and stop at the first failure, with its exit code.

    python tools/check.py

ruff lint, ruff format check, mypy (strict, configured in pyproject.toml over
rxllm/), then pytest (warnings are errors, configured in pyproject.toml).
Each tool runs from this interpreter's environment, so the command works the
same in a fresh venv, in CI and on Windows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GATES: list[tuple[str, list[str]]] = [
    ("lint", ["ruff", "check", "."]),
    ("format", ["ruff", "format", "--check", "."]),
    ("types", ["mypy"]),
    ("tests", ["pytest", "-q"]),
]


def main() -> int:
    for name, command in GATES:
        print(f"== {name}: {' '.join(command)}", flush=True)
        code = subprocess.call([sys.executable, "-m", *command], cwd=ROOT)
        if code != 0:
            print(f"== {name} failed (exit code {code})", flush=True)
            return code
    print("== all gates passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

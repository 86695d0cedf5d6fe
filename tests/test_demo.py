"""The README's main job, until the command line replaces it: ``python -m rxllm.demo``."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_runs_and_shows_each_way_to_consume_a_stream() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rxllm.demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Cold observables start work only when someone subscribes." in out
    assert "finish=stop" in out
    assert "got ['Cold ', 'observables ', 'start ']" in out
    assert out.count("stopped early") == 2

"""The notebooks in ``notebooks/`` run top to bottom with no API key, against the emulator.

Each is executed with nbclient in a kernel started hermetically: the kernel
spec is written to a temporary directory and runs this interpreter
(``sys.executable -m ipykernel_launcher``), so no installed kernel is used;
provider keys, base URLs and rxllm settings are removed from its environment
and it runs in an empty directory. Cells are found by their tag.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

import rxllm
from rxllm import registry
from rxllm.emulator import Emulator

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "rxllm-test-python"
FOUR = ["anthropic:claude-haiku-4-5", "openai:gpt-5-mini", "gemini:gemini-2.5-flash", "grok:grok-4"]


def hermetic_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(("_API_KEY", "_BASE_URL"))
        and not name.startswith(("RXLLM_", "PYTEST_", "JPY_"))
    }


def execute(
    name: str | Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    allow_errors: bool = False,
) -> dict[str, Any]:
    """Run ``notebooks/<name>`` (or the notebook at an absolute path) in a fresh kernel;
    every cell's outputs by its tag."""
    kernels = tmp_path / "kernels"
    (kernels / KERNEL).mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rxllm test",
        "language": "python",
    }
    (kernels / KERNEL / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    work = tmp_path / "work"
    work.mkdir()
    manager = AsyncKernelManager(
        kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        book,
        km=manager,
        kernel_name=KERNEL,
        timeout=60,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute(cleanup_kc=True, env=hermetic_env())  # our km: nbclient shuts it down
    cells: dict[str, Any] = {}
    for cell in book.cells:
        for tag in cell.metadata.get("tags", []):
            cells[tag] = cell
    return cells


def stdout(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def html_of(cell: Any) -> str:
    """The HTML the cell shows (its live display, in its final state)."""
    shown = [o for o in cell.outputs if o.output_type == "display_data"]
    assert len(shown) == 1, cell.outputs
    assert not [o for o in cell.outputs if o.output_type == "execute_result"]  # no second copy
    return str(shown[0].data["text/html"])


def expected_text(spec: str, prompt: str, **fields: Any) -> str:
    """The emulator is deterministic: the same request on a fresh one gives the same text."""

    async def go() -> str:
        async with Emulator() as emu:
            name = spec.split(":", 1)[0]
            bound = registry.model(spec, api_key="k", base_url=emu.base_url(name))
            try:
                return (await rxllm.collect(bound.stream(prompt, **fields))).text
            finally:
                await bound.provider.aclose()

    return asyncio.run(go())


def test_all_notebooks_are_saved_without_outputs() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "compare.ipynb",
        "flows.ipynb",
        "pipelines.ipynb",
        "quickstart.ipynb",
        "sweep.ipynb",
        "tools.ipynb",
    ]
    for path in NOTEBOOKS.glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], path.name
                assert cell.execution_count is None, path.name


def test_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("quickstart.ipynb", tmp_path, monkeypatch)

    notices = stdout(cells["connect"])
    for name in ("anthropic", "openai", "gemini", "grok"):
        assert f"{name}: no " in notices
    assert notices.count("using the local emulator at http://127.0.0.1:") == 3
    assert "grok: no XAI_API_KEY set, using the local emulator at 127.0.0.1:" in notices

    shown = html_of(cells["show-stream"])
    text = expected_text(FOUR[0], "Say hello to a new rxllm user.", max_tokens=40)
    assert html.escape(text) in shown
    assert "usage " in shown
    assert "length" in shown

    assert "[length] " in stdout(cells["aiter"])
    collected = stdout(cells["collect"])
    assert collected.startswith(expected_text(FOUR[1], "What is a cold observable?", max_tokens=30))
    assert "length" in collected
    assert stdout(cells["generate"]).strip()
    each = stdout(cells["each-provider"]).splitlines()
    assert [line.split()[0] for line in each] == FOUR
    assert all(" length " in line and " tokens $" in line for line in each)
    reasoning = stdout(cells["reasoning"])
    assert "thinking: " in reasoning
    assert "reasoning tokens: " in reasoning
    assert "reasoning tokens: 0 " not in reasoning


def test_compare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("compare.ipynb", tmp_path, monkeypatch)

    shown = html_of(cells["show-compare"])
    for spec in FOUR:
        assert f"<h4>{spec}</h4>" in shown
    assert shown.count("ttft ") == 4
    assert shown.count(" · length") == 4

    rows = stdout(cells["summary"]).splitlines()
    assert [row.split()[0] for row in rows] == FOUR
    assert all(row.endswith("length") and " tok/s " in row for row in rows)

    (frame,) = cells["dataframe"].outputs  # pandas is in the dev extras: a real DataFrame
    html = frame["data"]["text/html"]
    assert "<table" in html
    assert all(spec in html for spec in FOUR)
    failing = stdout(cells["failing-lane"]).splitlines()
    assert failing[0].startswith("anthropic: asked to emulate, using the local emulator")
    lanes = dict(line.split(maxsplit=1) for line in failing[2:])
    assert lanes["openai:gpt-5-mini~fault=overloaded"].startswith("OverloadedError")
    assert lanes["anthropic:claude-haiku-4-5"] == expected_text(FOUR[0], "Hello!", max_tokens=15)

    stopped = eval(stdout(cells["stop"]))  # {lane: tokens so far}
    assert sorted(stopped) == ["gemini:gemini-2.5-flash~tps=20", "grok:grok-4~tps=20"]
    # Stopped before the reply's end. How many tokens came in the cell's one second depends
    # on the machine (a loaded one may not have sent the first), so no lower bound.
    assert all(0 <= tokens < 60 for tokens in stopped.values())
    final = html_of(cells["stop"])  # the display shows where each lane stopped
    assert "stopped" in final
    for tokens in stopped.values():
        assert f"{tokens} tokens" in final


def test_pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("pipelines.ipynb", tmp_path, monkeypatch)

    assert "asked to emulate" in stdout(cells["connect"])
    assert stdout(cells["take-tokens"]).startswith("token_limit · 5 tokens · ")
    assert stdout(cells["timeout"]).strip() == "TimeoutError · phase: first_token"
    retry = stdout(cells["retry"])
    assert "recovered: length · 30 tokens" in retry
    assert "same text as an uninterrupted reply: True" in retry
    race = stdout(cells["race"])
    assert "race winner: grok (index 1)" in race
    assert "hedge answered by: openai" in race
    batch = stdout(cells["batch"])
    assert batch.startswith("40 token events -> ")
    assert batch.strip().endswith("same text: True")
    assert int(batch.split("-> ")[1].split()[0]) < 40
    limited = stdout(cells["rate-limit"])
    assert limited.startswith("length after ")
    assert float(limited.split("after ")[1].split("s")[0]) >= 1.0


def test_a_blocking_call_in_a_cell_raises_at_once_naming_the_async_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After `await rxllm.connect(...)` the emulator runs on the kernel's loop, which a
    # blocking call in a cell would stop: before the fix, collect_sync hung the kernel.
    book = nbformat.v4.new_notebook()
    sources = {
        "connect": 'import rxllm\n(gpt,) = await rxllm.connect("openai:gpt-5-mini", emulate=True)',
        "collect-sync": 'rxllm.collect_sync(gpt.stream("Hi", max_tokens=3))',
        "iterate": 'for event in rxllm.iterate(gpt.stream("Hi", max_tokens=3)):\n    print(event)',
        "run": 'gpt.stream("Hi", max_tokens=3).run()',
        "with-connect": 'with rxllm.connect("openai:gpt-5-mini", emulate=True) as models:\n'
        "    pass",
        "async": 'print((await rxllm.collect(gpt.stream("Hi", max_tokens=3))).text)',
    }
    for tag, source in sources.items():
        book.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": [tag]}))
    path = tmp_path / "blocking.ipynb"
    nbformat.write(book, path)

    cells = execute(path, tmp_path, monkeypatch, allow_errors=True)

    assert "using the local emulator" in stdout(cells["connect"])
    for tag, async_form in [
        ("collect-sync", "await rxllm.collect("),
        ("iterate", "async for event in rxllm.aiter("),
        ("run", "await rxllm.collect("),
        ("with-connect", "async with rxllm.connect("),
    ]:
        (error,) = [o for o in cells[tag].outputs if o.output_type == "error"]
        assert error.ename == "BlockingCallInEventLoopError", tag
        assert async_form in error.evalue, tag
    assert stdout(cells["iterate"]) == ""  # no event before the error
    assert stdout(cells["async"]).strip() == expected_text("openai:gpt-5-mini", "Hi", max_tokens=3)


def test_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("tools.ipynb", tmp_path, monkeypatch)

    schema = json.loads(stdout(cells["define-tools"]))
    assert schema["required"] == ["city"]
    assert schema["properties"]["city"]["description"] == "The city's name."

    streamed = stdout(cells["stream-call"]).splitlines()
    deltas = [line for line in streamed if line.startswith("delta")]
    assert len(deltas) > 2  # Claude streams the arguments in fragments
    assert deltas[0].startswith("delta 0 get_weather")
    assert [line.split()[0] for line in streamed[len(deltas) :]] == ["call", "done"]
    assert streamed[-1] == "done  tool_calls"

    loop = stdout(cells["run-tools"]).splitlines()
    assert [line.split()[0] for line in loop[:4]] == ["call", "call", "result", "result"]
    assert loop[4].startswith("done    stop after 2 rounds,")
    assert loop[5].startswith("The tools said: 12°C and light rain in ")
    assert "'time': '14:05'" not in loop[5]
    assert '"time":"14:05"' in loop[5]

    stopped = stdout(cells["loop-operators"])
    assert stopped.startswith("token_limit 'The tools' ")  # three tokens of the answer
    assert stopped.rstrip().endswith("['get_weather']")

    structured = stdout(cells["structured"]).splitlines()
    assert int(structured[0].split()[0]) > 3
    assert structured[1].startswith("City name=")
    assert "population=" in structured[1]
    assert stdout(cells["structured-error"]).startswith(
        'StructuredOutputError · {"name": "Oslo"} · 2 errors'
    )

    images = stdout(cells["images"]).splitlines()
    assert [line.split()[0] for line in images[:4]] == FOUR
    assert all(line.endswith("→ length") for line in images[:4])
    assert images[4].startswith("UnsupportedContentError · grok:grok-4: grok cannot take document")

    conversation = stdout(cells["conversation"]).splitlines()
    assert conversation[0] == "['user', 'assistant', 'tool', 'assistant', 'user', 'assistant']"
    assert conversation[1].endswith("characters of JSON; 6 messages back")

    lanes = stdout(cells["compare"]).splitlines()
    assert [line.split()[0] for line in lanes] == FOUR
    assert all(" · length · " in line for line in lanes)
    calls = stdout(cells["compare-tools"]).splitlines()
    assert [line.split()[0] for line in calls] == FOUR
    assert all(" · tool_calls · get_weather({" in line for line in calls)


def test_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("flows.ipynb", tmp_path, monkeypatch)

    assert eval(stdout(cells["connect"]).splitlines()[0]) == [
        "gemini:gemini-2.5-pro",
        "anthropic:claude-sonnet-4-6",
        "openai:gpt-5-mini",
    ]
    shown = html_of(cells["run"])  # the live display, in its final state
    for step in ("plan:architecture", "implement:code_generation", "qa:code_review"):
        assert f"<h4>{step} · done</h4>" in shown
    assert "<table>" in shown
    assert "<td>implement</td>" in shown

    chain = stdout(cells["chain"]).splitlines()
    assert chain[0] == "completed · plan:architecture → implement:code_generation → qa:code_review"
    asked = chain[1].split("asked: ")[1]
    plan = chain[2].split("starts:")[1].strip()
    assert asked == "'Implement this plan:\\n\\n" + plan[1:]  # the plan fed implement's prompt
    assert chain[3].endswith("in its step: True")
    assert int(chain[3].split()[0]) >= 3  # at least one partial response per step

    rows = stdout(cells["usage"]).splitlines()
    assert [row.split()[0] for row in rows] == ["plan", "implement", "qa"]
    assert all(int(row.split()[2]) > 0 and "$" in row for row in rows)

    timeout = stdout(cells["timeout"]).splitlines()
    assert timeout[0] == "stopped at draft · TimeoutError"
    assert timeout[1] == "stream_aborted: True · steps run: ('draft',)"
    assert len(timeout[2]) > len("kept: ''")

    aborted = stdout(cells["abort"]).splitlines()
    assert aborted[0] == "aborted at draft · the user pressed stop"
    assert aborted[1].startswith("stream_aborted: True · kept: '")
    assert aborted[1] != "stream_aborted: True · kept: ''"


def test_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("sweep.ipynb", tmp_path, monkeypatch)

    assert stdout(cells["connect"]).count("asked to emulate, using the local emulator") == 4
    progress = html_of(cells["sweep"])  # the live display, in its final state
    assert "rxllm sweep</b> · 200/200 rows · spent $" in progress
    assert "50/50 · 5 failed" in progress  # Claude's five refusals are rows
    assert progress.count("50/50 · 0 failed") == 3  # cut, limited, failing: all retried

    (frame,) = cells["summary"].outputs  # pandas is a dev dependency: a real DataFrame
    table = frame["data"]["text/html"]
    assert "<table" in table
    for column in ("success_rate", "ttft_p50_s", "ttft_p95_s", "tokens_per_s_p50", "cost_usd"):
        assert column in table
    assert "ContextTooLongError" in table

    failed = stdout(cells["errors"]).splitlines()
    assert len(failed) == 5
    assert all(" ContextTooLongError anthropic:claude-haiku-4-5" in line for line in failed)

    shown = ("display_data", "execute_result")
    (figure,) = [o for o in cells["plots"].outputs if o.output_type in shown]
    assert "image/png" in figure["data"]  # matplotlib (a dev dependency) drew it

    assert stdout(cells["resume"]).strip() == "ran 0, skipped 200, rows 200"

"""The Jupyter live view: lane text, escaping, reasoning apart, errors in their lane, throttling."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import reactivex
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import notebook
from rxllm.compare import Comparison
from rxllm.emulator import Emulator
from rxllm.errors import OverloadedError
from rxllm.events import DoneEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent, Usage
from rxllm.notebook import show
from rxllm.providers.openai import OpenAIProvider
from rxllm.testing import EMULATOR_KEY

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)


class RecordingHandle:
    """Stands in for an IPython display handle: keeps every HTML it was given."""

    def __init__(self) -> None:
        self.updates: list[str] = []

    def update(self, obj: Any) -> None:
        self.updates.append(obj._repr_html_())


def done(provider: str = "p") -> DoneEvent:
    return DoneEvent(Usage(3, 5), FinishReason.STOP, model="m", provider=provider)


def test_a_comparison_renders_each_lane_text_escaped_with_reasoning_apart() -> None:
    scheduler = TestScheduler()
    left = scheduler.create_cold_observable(
        on_next(10, ReasoningEvent("thinking <hard>")),
        on_next(20, TokenEvent("<b>bold</b> ")),
        on_next(30, TokenEvent("& café")),
        on_next(40, done("left")),
        on_completed(50),
    )
    right = scheduler.create_cold_observable(
        on_next(15, TokenEvent("partial")),
        on_error(25, OverloadedError("Overloaded", provider="right", status=529)),
    )
    handle = RecordingHandle()
    comparison = Comparison({"left:m": left, "right:m": right}, clock=lambda: scheduler.clock)
    show(comparison, handle=handle, scheduler=scheduler)
    scheduler.start()

    final = handle.updates[-1]
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; café" in final
    assert "<b>bold</b>" not in final
    assert "partial" in final
    assert "OverloadedError" in final
    assert "rxllm-error" in final
    # reasoning is drawn apart, collapsed, never inside the answer text
    assert "<details><summary>reasoning</summary>" in final
    assert "thinking &lt;hard&gt;" in final
    assert final.index("thinking") < final.index("bold")
    assert "left:m" in final
    assert "right:m" in final
    assert "usage 3+5" in final


def test_redraws_are_throttled_not_one_per_token() -> None:
    scheduler = TestScheduler()
    # 200 tokens, one every 0.01 s of virtual time (2 s in all); 4 redraws/s allowed.
    messages = [on_next(1 + i * 0.01, TokenEvent("x")) for i in range(200)]
    tokens = scheduler.create_cold_observable(*messages, on_completed(3.5))
    handle = RecordingHandle()
    view = show(tokens, handle=handle, scheduler=scheduler, refresh_per_second=4)
    scheduler.start()

    assert "x" * 200 in handle.updates[-1]  # the final state is always drawn
    # initial draw + at most ~4/s over 2 s of tokens + the final draw
    assert len(handle.updates) <= 1 + 10 + 1
    assert len(handle.updates) >= 3  # and it does redraw while streaming
    assert view.view.redraws == len(handle.updates)


def test_a_single_stream_has_no_lane_title() -> None:
    handle = RecordingHandle()
    events: list[StreamEvent] = [TokenEvent("hello"), done()]
    scheduler = TestScheduler()
    show(reactivex.from_iterable(events), handle=handle, scheduler=scheduler)
    scheduler.start()
    assert "hello" in handle.updates[-1]
    assert "<h4>" not in handle.updates[-1]


def test_stop_disposes_and_draws_where_the_stream_stopped() -> None:
    scheduler = TestScheduler()
    tokens = scheduler.create_cold_observable(
        *[on_next(1 + i, TokenEvent(f"t{i} ")) for i in range(10)], on_completed(20)
    )
    handle = RecordingHandle()
    live = show(tokens, handle=handle, scheduler=scheduler, refresh_per_second=1)
    scheduler.advance_to(4.5)
    live.stop()
    scheduler.start()

    final = handle.updates[-1]
    assert "t3 " in final
    assert "t4 " not in final  # nothing after the stop
    assert "stopped" in final
    assert "4 tokens" in final
    assert live.view.text() == "t0 t1 t2 t3 "
    assert live.view.stopped


def test_the_live_view_is_not_displayed_twice_in_its_own_cell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import IPython.display

    import rxllm.notebook

    shown: list[str] = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj._repr_html_()))
    cell = [7]
    monkeypatch.setattr(rxllm.notebook, "_execution_count", lambda: cell[0])
    scheduler = TestScheduler()
    events: list[StreamEvent] = [TokenEvent("hi"), done()]
    live = show(reactivex.from_iterable(events), handle=RecordingHandle(), scheduler=scheduler)
    scheduler.start()

    live._ipython_display_()  # the value its own cell ends with: it is on screen already
    assert shown == []
    cell[0] = 8
    live._ipython_display_()  # evaluated in a later cell: a snapshot
    assert len(shown) == 1
    assert "hi" in shown[0]
    assert repr(live.view) == "<LiveView stream: ttft 0.00s · 1 tokens · usage 3+5 · stop>"


async def test_evaluating_a_stream_in_a_cell_shows_it_live(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import IPython.display
    from IPython.core.formatters import DisplayFormatter

    handle = RecordingHandle()
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: handle)
    shell = SimpleNamespace(display_formatter=DisplayFormatter())
    assert notebook.register_display(shell)  # what importing rxllm does in a kernel
    provider = OpenAIProvider(api_key=EMULATOR_KEY, base_url=emulator.base_url("openai"))
    try:
        stream = provider.stream("Hi", model="gpt-4o", max_tokens=5)
        # What IPython does when a cell's value is the stream.
        assert shell.display_formatter.ipython_display_formatter(stream)
        for _ in range(1000):  # the stream runs on this loop: let it finish
            if handle.updates and "length" in handle.updates[-1]:
                break
            await asyncio.sleep(0.01)
        reference = await provider.complete(stream.request)
    finally:
        await provider.aclose()
    assert reference.text in handle.updates[-1]

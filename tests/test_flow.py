"""The flow layer: Context, steps, Flow and LLMStreamStep, against the emulator."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from reactivex.subject import Subject

import rxllm
from rxllm import registry
from rxllm.emulator import Emulator
from rxllm.events import Usage
from rxllm.flow import (
    DEFAULT_TIMEOUT,
    Context,
    ContextChange,
    Flow,
    FlowEvent,
    FunctionStep,
    LLMStreamStep,
)
from rxllm.operators import take_tokens
from rxllm.testing import EMULATOR_KEY

STALL = "gpt-5-mini~fault=stall,after=5"
"""Five tokens, then silence with the connection open: only a timeout or an abort ends it."""


_bound: list[Any] = []


def bind(emulator: Emulator, model: str = "gpt-5-mini", vendor: str = "openai") -> Any:
    """A model on the emulator; its provider is closed after the test."""
    bound = registry.model(
        f"{vendor}:{model}", api_key=EMULATOR_KEY, base_url=emulator.base_url(vendor)
    )
    _bound.append(bound)
    return bound


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    yield
    while _bound:
        await _bound.pop().provider.aclose()


def prompt_of(request: Any) -> str:
    return str(request.body["messages"][-1]["content"])


async def full_reply(emulator: Emulator, prompt: str) -> str:
    """The emulator is deterministic: the whole reply the stalled stream was cut from."""
    return await bind(emulator).generate(prompt)


# -- Context ----------------------------------------------------------------------------


def test_context_changes_are_an_observable_of_key_old_new_in_order() -> None:
    context = Context(prompt="Hi")
    seen: list[ContextChange] = []
    context.changes.subscribe(seen.append)

    context["partial_response"] = "a"
    context["partial_response"] = "ab"
    context["prompt"] = "Hi"  # every assignment is a change
    del context["prompt"]

    assert seen == [
        ("partial_response", None, "a"),
        ("partial_response", "a", "ab"),
        ("prompt", "Hi", "Hi"),
        ("prompt", "Hi", None),
    ]
    assert dict(context) == {"partial_response": "ab"}


def test_a_context_snapshots_to_json_with_usage_and_finish_reason() -> None:
    context = Context(usage=Usage(3, 4, cost=0.5), finish_reason=rxllm.FinishReason.STOP)
    assert json.loads(context.to_json()) == {
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "reasoning_tokens": 0, "cost": 0.5},
        "finish_reason": "stop",
    }
    snapshot = context.snapshot()
    context["more"] = 1
    assert "more" not in snapshot


def test_secrets_are_never_stored_in_a_context() -> None:
    context = Context()
    with pytest.raises(ValueError, match="secrets are never kept"):
        context["key"] = SecretStr("sk-something-secret")
    for name in ("api_key", "openai_api_key", "password"):
        with pytest.raises(ValueError, match="secrets are never kept"):
            context[name] = "x"
    # A key rxllm was given (a provider holds it) is refused inside any string.
    registry.provider("openai", api_key=EMULATOR_KEY, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="contains an API key") as raised:
        context["note"] = f"the key is {EMULATOR_KEY}"
    assert EMULATOR_KEY not in str(raised.value)
    with pytest.raises(ValueError, match="secrets are never kept"):
        Context(api_key="x")
    assert dict(context) == {}


# -- Flow -------------------------------------------------------------------------------


async def test_a_three_step_flow_passes_the_context_along_in_order(emulator: Emulator) -> None:
    gpt = bind(emulator)
    order: list[str] = []

    def outline(context: Context) -> None:  # a sync function is a step
        order.append("outline")
        context["request"] = f"Outline: {context['plan'][:30]}"

    async def stamp(context: Context) -> bool:  # an async one too
        order.append("stamp")
        context["stamped"] = True
        return True

    flow = Flow(
        [
            LLMStreamStep(gpt, output_key="plan", name="plan", max_tokens=20),
            outline,
            stamp,
            LLMStreamStep(gpt, prompt="Implement this. {request}", output_key="code", name="code"),
        ]
    )
    context = Context(prompt="A CLI that counts words")
    result = await flow.run(context)

    assert result.ok
    assert result.status == "completed"
    assert result.steps == ("plan", "outline", "stamp", "code")
    assert order == ["outline", "stamp"]
    first, second = emulator.requests
    assert prompt_of(first) == "A CLI that counts words"
    assert prompt_of(second) == f"Implement this. Outline: {context['plan'][:30]}"
    assert context["code"] == await bind(emulator).generate(prompt_of(second))
    assert context["stamped"] is True
    assert context["finish_reason"] == "stop"


async def test_a_step_that_returns_false_stops_the_flow_and_is_named() -> None:
    ran: list[str] = []
    flow = Flow(
        [
            FunctionStep(lambda c: ran.append("a"), name="first"),
            FunctionStep(lambda c: False, name="gate"),
            FunctionStep(lambda c: ran.append("never"), name="never"),
        ]
    )
    result = await flow.run()
    assert (result.status, result.ended_by, result.steps) == ("stopped", "gate", ("first", "gate"))
    assert result.reason == "the step returned False"
    assert ran == ["a"]


async def test_a_step_that_raises_is_reported_with_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(context: Context) -> bool:
        raise KeyError("no such thing")

    flow = Flow([lambda c: True, boom, lambda c: pytest.fail("ran after a failure")])
    events: list[FlowEvent] = []
    ended = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="rxllm.flow"):
        result = await flow.run()
        flow.events().subscribe(events.append, on_completed=ended.set)  # the same, as events
        await ended.wait()

    assert (result.status, result.ended_by) == ("failed", "boom")
    assert isinstance(result.error, KeyError)
    assert result.reason == "KeyError: 'no such thing'"
    assert "step 'boom' failed: KeyError" in caplog.text
    failed = [e for e in events if e.type == "failed"]
    assert [(e.step, type(e.error)) for e in failed] == [("boom", KeyError)]
    assert [e.type for e in events] == ["started", "finished", "started", "failed", "ended"]


async def test_a_provider_error_fails_the_step_logged_and_kept_in_the_context(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    step = LLMStreamStep(bind(emulator, "gpt-5-mini~fault=overloaded"), name="draft")
    with caplog.at_level(logging.ERROR, logger="rxllm.flow"):
        result = await Flow([step]).run({"prompt": "Hi"})
    assert (result.status, result.ended_by) == ("failed", "draft")
    assert isinstance(result.error, rxllm.errors.OverloadedError)
    assert result.context["error"].startswith("OverloadedError: ")
    assert result.context["stream_aborted"] is False
    assert "step 'draft': the stream failed: OverloadedError" in caplog.text


async def test_bad_input_fails_the_step_before_any_request(emulator: Emulator) -> None:
    gpt = bind(emulator)
    result = await Flow([LLMStreamStep(gpt, name="s")]).run({})
    assert result.status == "failed"
    assert "reads its prompt from context['prompt'], which is missing" in str(result.error)
    result = await Flow([LLMStreamStep(gpt, prompt="Use {plan}", name="s")]).run({"x": 1})
    assert "needs context['plan'], which is missing (the context has: x)" in str(result.error)
    result = await Flow([LLMStreamStep(gpt, name="s")]).run({"prompt": "Hi", "timeout": "soon"})
    assert "context['timeout'] must be seconds" in str(result.error)
    with pytest.raises(TypeError):
        LLMStreamStep(gpt, colour="blue")
    assert emulator.requests == []


# -- LLMStreamStep ----------------------------------------------------------------------


async def test_the_change_observable_delivers_the_partial_responses_in_order(
    emulator: Emulator,
) -> None:
    step = LLMStreamStep(bind(emulator, "gpt-5-mini~tps=200"), max_tokens=60)
    context = Context(prompt="Tell me about streams")
    partials: list[str] = []
    context.changes.subscribe(
        lambda c: partials.append(c.new) if c.key == "partial_response" and c.new else None
    )

    assert await step.execute(context) is True

    assert partials, "no partial response"
    for shorter, longer in itertools.pairwise(partials):
        assert longer.startswith(shorter)
        assert len(longer) > len(shorter)
    assert partials[-1] == context["final_response"]
    assert context["final_response"] == await bind(emulator).generate(
        "Tell me about streams", max_tokens=60
    )
    assert context["stream_aborted"] is False
    assert context["usage"].completion_tokens == 60


async def test_partial_responses_are_throttled_not_one_per_token(emulator: Emulator) -> None:
    # With an interval far longer than the whole stream, the 60 tokens reach the
    # context as one partial response (the flush before the end), not 60.
    step = LLMStreamStep(bind(emulator), partial_interval=300)
    context = Context(prompt="Hi")
    partials: list[str] = []
    context.changes.subscribe(
        lambda c: partials.append(c.new) if c.key == "partial_response" and c.new else None
    )
    assert await step.execute(context)
    assert partials == [context["final_response"]]
    assert context["usage"].completion_tokens > 1


async def test_a_timeout_keeps_the_partial_text_marks_the_context_and_stops_the_flow(
    emulator: Emulator,
) -> None:
    after: list[str] = []
    flow = Flow([LLMStreamStep(bind(emulator, STALL), name="slow"), lambda c: after.append("x")])
    context = Context(prompt="Hi", timeout=0.5)

    result = await flow.run(context)

    assert (result.status, result.ended_by) == ("stopped", "slow")
    assert result.reason is not None
    assert result.reason.startswith("TimeoutError: ")
    assert after == []
    assert context["stream_aborted"] is True
    assert context["finish_reason"] == "timeout"
    assert "final_response" not in context
    partial = context["partial_response"]
    assert partial
    assert (await full_reply(emulator, "Hi")).startswith(partial)
    assert context["usage"].completion_tokens == 5
    (stalled, _) = emulator.requests
    assert stalled.disconnected


async def test_the_step_timeout_applies_when_the_context_has_none(emulator: Emulator) -> None:
    assert DEFAULT_TIMEOUT == 30.0
    step = LLMStreamStep(bind(emulator, STALL), timeout=0.3)
    context = Context(prompt="Hi")
    assert await step.execute(context) is False
    assert context["finish_reason"] == "timeout"
    assert await emulator.wait_for_disconnects_async(1) == emulator.requests


@pytest.mark.parametrize("how", ["flow.abort", "abort_when", "step.abort"])
async def test_an_abort_from_another_thread_closes_the_connection_and_keeps_the_text(
    emulator: Emulator, how: str
) -> None:
    step = LLMStreamStep(bind(emulator, STALL), timeout=None, name="writer")
    flow = Flow([step, lambda c: pytest.fail("ran after an abort")])
    trigger: Subject[None] = Subject()
    context = Context(prompt="Hi")
    abort = {
        "flow.abort": flow.abort,
        "abort_when": lambda: trigger.on_next(None),
        "step.abort": step.abort,
    }[how]

    def abort_from_a_thread(change: ContextChange) -> None:
        if change.key == "partial_response" and change.new:
            threading.Thread(target=abort).start()

    context.changes.subscribe(abort_from_a_thread)
    result = await flow.run(context, abort_when=trigger)

    assert result.ended_by == "writer"
    assert result.status == ("stopped" if how == "step.abort" else "aborted")
    assert context["stream_aborted"] is True
    assert context["finish_reason"] == "cancelled"
    assert (await full_reply(emulator, "Hi")).startswith(context["partial_response"])
    (disconnected,) = await emulator.wait_for_disconnects_async(1)
    assert disconnected is emulator.requests[0]


async def test_an_abort_cancels_a_function_step_that_does_not_watch_for_it() -> None:
    started = asyncio.Event()

    async def forever(context: Context) -> bool:
        started.set()
        await asyncio.Event().wait()
        return True

    flow = Flow([forever])
    running = asyncio.ensure_future(flow.run())
    await started.wait()
    await asyncio.to_thread(flow.abort, "the user pressed stop")
    result = await running
    assert (result.status, result.ended_by, result.reason) == (
        "aborted",
        "forever",
        "the user pressed stop",
    )


async def test_a_flow_run_is_an_observable_of_step_events_and_disposing_it_disconnects(
    emulator: Emulator,
) -> None:
    flow = Flow([LLMStreamStep(bind(emulator), name="one", max_tokens=5), lambda c: True])
    events: list[FlowEvent] = []
    ended = asyncio.Event()
    flow.events({"prompt": "Hi"}).subscribe(events.append, on_completed=ended.set)
    await ended.wait()
    kinds = [(e.type, e.step) for e in events if e.type != "progress"]
    assert kinds == [
        ("started", "one"),
        ("finished", "one"),
        ("started", "<lambda>"),
        ("finished", "<lambda>"),
        ("ended", ""),
    ]
    progress = [e.change.key for e in events if e.type == "progress" and e.change]
    assert progress[-1] == "final_response"
    final = events[-1].result
    assert final is not None
    assert final.ok

    stalled = Flow([LLMStreamStep(bind(emulator, STALL), timeout=None, name="stall")])
    streaming = asyncio.Event()

    def on_event(event: FlowEvent) -> None:
        if event.change and event.change.key == "partial_response" and event.change.new:
            streaming.set()

    subscription = stalled.events({"prompt": "Hi"}).subscribe(on_event)
    await streaming.wait()
    subscription.dispose()
    (disconnected,) = await emulator.wait_for_disconnects_async(1)
    assert disconnected.model.startswith("gpt-5-mini")


async def test_operators_attach_to_the_steps_stream(emulator: Emulator) -> None:
    step = LLMStreamStep(bind(emulator, STALL), operators=[take_tokens(3)], system="Be brief.")
    context = Context(prompt="Hi", system="Answer in French.")
    assert await step.execute(context) is True
    assert context["finish_reason"] == "token_limit"
    assert context["usage"].completion_tokens == 3
    (request,) = emulator.requests
    assert request.body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert await emulator.wait_for_disconnects_async(1) == [request]  # take_tokens closed it


async def test_the_context_model_overrides_the_steps_model(emulator: Emulator) -> None:
    step = LLMStreamStep(bind(emulator), max_tokens=3)
    assert await step.execute(Context(prompt="Hi", model="gpt-4o"))
    assert emulator.requests[0].model == "gpt-4o"

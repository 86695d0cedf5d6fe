"""The four phases: capabilities, system prompts, defaults, routing and usage per phase."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from rxllm import config, model_for_phase, phases
from rxllm.config import Settings
from rxllm.emulator import Emulator
from rxllm.errors import ConfigurationError
from rxllm.events import Usage
from rxllm.flow import Context, Flow
from rxllm.phases import BUILTIN_PHASES, PhaseStep
from rxllm.testing import EMULATOR_KEY

VENDORS = ("anthropic", "openai", "gemini", "grok")
_providers: list[Any] = []


def on(emulator: Emulator, **values: Any) -> Settings:
    """Settings that send every vendor to the emulator, plus ``values``."""
    tables = {v: {"base_url": emulator.base_url(v), "api_key": EMULATOR_KEY} for v in VENDORS}
    return config.load_settings(**tables, **values)


def step(*args: Any, **kwargs: Any) -> PhaseStep:
    made = PhaseStep(*args, **kwargs)
    _providers.append(made.model.provider)
    return made


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    yield
    while _providers:
        await _providers.pop().aclose()


def test_the_four_phases_and_their_capabilities_are_the_plans() -> None:
    assert {name: list(p.capabilities) for name, p in BUILTIN_PHASES.items()} == {
        "plan": ["requirements", "architecture", "documentation"],
        "creative": ["ui_ux", "problem_solving", "design_patterns"],
        "implement": ["code_generation", "refactoring", "optimization"],
        "qa": ["test_strategy", "code_review", "validation"],
    }
    for info in BUILTIN_PHASES.values():
        assert info.system
        assert info.name.upper() in info.system
        assert all(info.name.upper() in prompt for prompt in info.capabilities.values())
    assert BUILTIN_PHASES["plan"].defaults == {"reasoning": True}
    assert BUILTIN_PHASES["qa"].defaults == {"reasoning": True}
    assert BUILTIN_PHASES["implement"].defaults == {"temperature": 0.2}


def test_routing_picks_the_configured_model_then_the_default_entry_then_rxllms() -> None:
    none = Settings()
    assert {name: phases.model_spec(name, settings=none) for name in BUILTIN_PHASES} == {
        "plan": "gemini:gemini-2.5-pro",
        "creative": "openai:gpt-5",
        "implement": "anthropic:claude-sonnet-4-6",
        "qa": "openai:gpt-5-mini",
    }
    mapped = Settings(phases={"qa": "grok:grok-4", "default": "openai:gpt-4o"})
    assert phases.model_spec("qa", settings=mapped) == "grok:grok-4"
    assert phases.model_spec("plan", settings=mapped) == "openai:gpt-4o"
    # rxllm.model_for_phase routes the same way.
    bound = model_for_phase("qa", settings=mapped, api_key="xai-test-0123456789abcdef")
    assert bound.spec == "grok:grok-4"


def test_an_unknown_phase_or_capability_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="the phases are: plan, creative, implement, qa"):
        PhaseStep("deploy", settings=Settings())
    with pytest.raises(ConfigurationError, match="has: requirements, architecture, documentation"):
        PhaseStep("plan", capability="testing", settings=Settings())


def test_phases_and_capabilities_come_from_the_configuration_too() -> None:
    mine = Settings(
        phases={"review": "openai:gpt-5"},
        capabilities={"review": {"security": "Find flaws."}, "qa": {"load": "Load test it."}},
    )
    assert phases.phase_names(mine) == ["plan", "creative", "implement", "qa", "review"]
    assert phases.phase("review", settings=mine).system_prompt("security") == "Find flaws."
    assert list(phases.phase("qa", settings=mine).capabilities)[-1] == "load"
    assert phases.model_spec("review", settings=mine) == "openai:gpt-5"
    loose = Settings(capabilities={"docs": {"api": "Document the API."}})
    with pytest.raises(ConfigurationError, match="no model for phase 'docs'"):
        phases.model_spec("docs", settings=loose)


def test_capabilities_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXLLM_CAPABILITIES__QA__SECURITY", "Find flaws.")
    monkeypatch.setenv("RXLLM_PHASES__QA", "openai:gpt-5")
    loaded = config.load_settings()
    assert loaded.capabilities == {"qa": {"security": "Find flaws."}}
    assert phases.phase("qa", settings=loaded).system_prompt("security") == "Find flaws."


async def test_a_phase_step_streams_to_the_phases_model_with_its_prompt_and_defaults(
    emulator: Emulator,
) -> None:
    settings = on(emulator)
    plan = step("plan", "architecture", settings=settings, max_tokens=2000)
    assert plan.name == "plan:architecture"
    assert await plan.execute(Context(prompt="A word counter"))
    (request,) = emulator.requests
    assert (request.dialect, request.model) == ("gemini", "gemini-2.5-pro")
    system = request.body["systemInstruction"]["parts"][0]["text"]
    assert system == BUILTIN_PHASES["plan"].capabilities["architecture"]
    assert "thinkingConfig" in request.body["generationConfig"]  # reasoning on

    mapped = on(emulator, phases={"implement": "gemini:gemini-2.5-flash"})
    await step("implement", settings=mapped, max_tokens=5).execute(Context(prompt="Code it"))
    await step("implement", settings=settings, max_tokens=5).execute(Context(prompt="Code it"))
    configured, default = emulator.requests[1:]
    assert (configured.dialect, configured.model) == ("gemini", "gemini-2.5-flash")
    assert configured.body["generationConfig"]["temperature"] == 0.2
    assert (default.dialect, default.model) == ("anthropic", "claude-sonnet-4-6")
    assert "temperature" not in default.body  # Claude's API takes no sampling parameters


async def test_usage_per_phase_adds_up_to_the_streams_usage(emulator: Emulator) -> None:
    settings = on(emulator)
    flow = Flow(
        [
            step("plan", "requirements", settings=settings, output_key="plan", max_tokens=2000),
            step("implement", settings=settings, prompt="Build:\n{plan}", output_key="code"),
            step("qa", "code_review", settings=settings, prompt="Review:\n{code}"),
            step("qa", "validation", settings=settings, prompt="Check:\n{code}", max_tokens=9),
        ]
    )
    context = Context(prompt="A word counter")
    usages: list[Usage] = []
    context.changes.subscribe(lambda c: usages.append(c.new) if c.key == "usage" else None)

    result = await flow.run(context)

    assert result.ok
    assert [r.model for r in emulator.requests] == [
        "gemini-2.5-pro",
        "claude-sonnet-4-6",
        "gpt-5-mini",
        "gpt-5-mini",
    ]
    assert emulator.requests[1].body["messages"][-1]["content"] == f"Build:\n{context['plan']}"
    assert result.usage is not None
    rows = {row["tag"]: row for row in result.usage.summary()}
    assert list(rows) == ["plan", "implement", "qa"]
    by_phase = {"plan": usages[0], "implement": usages[1], "qa": usages[2] + usages[3]}
    for tag, usage in by_phase.items():
        assert rows[tag]["prompt_tokens"] == usage.prompt_tokens > 0
        assert rows[tag]["completion_tokens"] == usage.completion_tokens > 0
        assert rows[tag]["reasoning_tokens"] == usage.reasoning_tokens
        assert rows[tag]["cost_usd"] == pytest.approx(usage.cost, abs=1e-6)
    assert rows["qa"]["requests"] == 2
    assert rows["plan"]["reasoning_tokens"] > 0
    total = result.usage.total()
    assert total.total_tokens == sum(u.total_tokens for u in usages)

"""The model catalog: the data file, model lookup and cost."""

from __future__ import annotations

import dataclasses
import datetime
import tomllib
from importlib import resources

import pytest

from rxllm import catalog, registry
from rxllm.events import Usage

REQUIRED_MODELS = {
    "anthropic": ["claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5"],
    "openai": ["gpt-5-mini", "gpt-5", "gpt-4.1", "gpt-4o", "o4-mini"],
    "gemini": ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"],
    "grok": ["grok-4", "grok-4-fast-reasoning", "grok-4-fast-non-reasoning", "grok-3-mini"],
}
DEFAULTS = {
    "anthropic": "claude-sonnet-4-6",
    "openai": "gpt-5-mini",
    "gemini": "gemini-2.5-flash",
    "grok": "grok-4",
}


def test_the_data_file_ships_with_the_package_and_is_dated() -> None:
    raw = resources.files("rxllm").joinpath("data", "models.toml").read_text(encoding="utf-8")
    data = tomllib.loads(raw)
    assert isinstance(data["as_of"], datetime.date)
    assert catalog.as_of() == data["as_of"]
    assert "Sources" in raw  # the file says where its figures came from


@pytest.mark.parametrize("provider", sorted(REQUIRED_MODELS))
def test_every_provider_lists_the_required_models_and_its_default(provider: str) -> None:
    listed = catalog.models(provider)
    assert set(REQUIRED_MODELS[provider]) <= set(listed)
    default = registry.spec(provider).default_model
    assert default == DEFAULTS[provider]
    assert default in listed
    assert len(listed) == len(set(listed))


def test_the_data_file_covers_the_four_and_specs_add_their_own_models() -> None:
    assert sorted(catalog._catalog().providers) == sorted(REQUIRED_MODELS)
    with_models = {spec.name for spec in registry.specs() if spec.models}
    assert with_models == {"deepseek"}
    assert sorted(catalog.providers()) == sorted({*REQUIRED_MODELS, *with_models})
    assert catalog.models("deepseek") == ["deepseek-chat", "deepseek-reasoner"]
    assert catalog.cost("deepseek", "deepseek-chat", Usage(prompt_tokens=10**6)) == 0.28


def test_added_models_never_replace_the_packaged_figures() -> None:
    before = catalog.info("openai", "gpt-5-mini")
    assert before is not None
    catalog.add_models([dataclasses.replace(before, input_price=99.0)])
    assert catalog.info("openai", "gpt-5-mini") == before


@pytest.mark.parametrize(
    ("provider", "model"),
    [(p, m) for p in sorted(REQUIRED_MODELS) for m in catalog.models(p)],
)
def test_every_entry_has_sane_figures(provider: str, model: str) -> None:
    found = catalog.info(provider, model)
    assert found is not None
    assert found.provider == provider
    assert found.id == model
    assert 0 < found.max_output_tokens <= found.context_window
    assert 0 < found.input_price <= found.output_price
    assert isinstance(found.reasoning, bool)
    if found.long_context_threshold is not None:
        assert found.long_context_threshold < found.context_window
        assert found.long_input_price is not None
        assert found.long_input_price > found.input_price
        assert found.long_output_price is not None
        assert found.long_output_price > found.output_price


def test_known_list_prices() -> None:
    def prices(provider: str, model: str) -> tuple[float, float]:
        found = catalog.info(provider, model)
        assert found is not None
        return found.input_price, found.output_price

    assert prices("anthropic", "claude-sonnet-4-5") == (3.0, 15.0)
    assert prices("anthropic", "claude-opus-4-5") == (5.0, 25.0)
    assert prices("anthropic", "claude-haiku-4-5") == (1.0, 5.0)
    assert prices("openai", "gpt-5") == (1.25, 10.0)
    assert prices("openai", "gpt-5-mini") == (0.25, 2.0)
    assert prices("openai", "gpt-4o") == (2.5, 10.0)
    assert prices("gemini", "gemini-2.5-flash") == (0.30, 2.50)
    assert prices("grok", "grok-4") == (3.0, 15.0)


def test_reasoning_flags() -> None:
    def reasons(provider: str, model: str) -> bool:
        found = catalog.info(provider, model)
        assert found is not None
        return found.reasoning

    assert reasons("openai", "o4-mini")
    assert reasons("grok", "grok-4-fast-reasoning")
    assert not reasons("grok", "grok-4-fast-non-reasoning")
    assert not reasons("openai", "gpt-4o")


@pytest.mark.parametrize(
    ("provider", "model", "base"),
    [
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4-0"),
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai", "o4-mini-2025-04-16", "o4-mini"),
        ("grok", "grok-4-0709", "grok-4"),
        ("grok", "grok-3-mini-latest", "grok-3-mini"),
        ("gemini", "models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("gemini", "gemini-2.5-pro-001", "gemini-2.5-pro"),
        ("anthropic", "claude-sonnet-4-5~fault=drop,after=5", "claude-sonnet-4-5"),
        ("grok", "grok-4-0709~ttft=0.2", "grok-4"),
    ],
)
def test_snapshots_aliases_and_emulator_knobs_resolve_to_the_base_model(
    provider: str, model: str, base: str
) -> None:
    found = catalog.info(provider, model)
    assert found is not None
    assert found.id == base


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("anthropic", "claude-sonnet-9"),
        ("anthropic", "gpt-5"),  # another provider's model
        ("openai", "gpt-5-mini-turbo"),
        ("anthropic", ""),
        ("nobody", "claude-sonnet-4-5"),
    ],
)
def test_unknown_models_have_no_info_and_no_cost(provider: str, model: str) -> None:
    assert catalog.info(provider, model) is None
    assert catalog.cost(provider, model, Usage(prompt_tokens=10, completion_tokens=10)) is None


def test_a_provider_without_figures_lists_no_models() -> None:
    # Aliases and unknown names belong to the registry, which canonicalizes first.
    assert catalog.models("ollama") == []
    assert catalog.models("claude") == []
    assert catalog.info("claude", "claude-sonnet-4-5") is None


def test_cost_bills_the_prompt_at_input_and_all_output_at_output_price() -> None:
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=2_000_000, reasoning_tokens=500_000)
    # 1M x $3 + 2M (reasoning included) x $15
    assert catalog.cost("anthropic", "claude-sonnet-4-5", usage) == pytest.approx(33.0)
    small = Usage(prompt_tokens=1200, completion_tokens=300)
    expected = (1200 * 0.25 + 300 * 2.0) / 1e6
    assert catalog.cost("openai", "gpt-5-mini", small) == pytest.approx(expected)
    assert catalog.cost("openai", "gpt-5-mini-2025-08-07~tps=10", small) == pytest.approx(expected)
    assert catalog.cost("openai", "gpt-5-mini", Usage()) == 0.0


def test_long_prompts_are_billed_at_the_long_context_tier() -> None:
    at_threshold = Usage(prompt_tokens=200_000, completion_tokens=1_000)
    above = Usage(prompt_tokens=200_001, completion_tokens=1_000)
    assert catalog.cost("gemini", "gemini-2.5-pro", at_threshold) == pytest.approx(
        (200_000 * 1.25 + 1_000 * 10.0) / 1e6
    )
    assert catalog.cost("gemini", "gemini-2.5-pro", above) == pytest.approx(
        (200_001 * 2.50 + 1_000 * 15.0) / 1e6
    )


def test_the_file_is_read_once() -> None:
    assert catalog._catalog() is catalog._catalog()


def test_a_malformed_catalog_is_rejected() -> None:
    good = {"models": {"m": _fields()}}
    catalog._parse({"as_of": datetime.date(2026, 1, 1), "p": good})
    with pytest.raises(ValueError, match="as_of"):
        catalog._parse({"p": good})
    twice = {"models": {"m": _fields(), "n": _fields(aliases=["m"])}}
    with pytest.raises(ValueError, match="twice"):
        catalog._parse({"as_of": datetime.date(2026, 1, 1), "p": twice})


def _fields(**extra: object) -> dict[str, object]:
    return {
        "context_window": 10,
        "max_output_tokens": 5,
        "input_price": 1.0,
        "output_price": 2.0,
        "reasoning": False,
        **extra,
    }

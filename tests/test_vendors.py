"""A vendor is declared once: a ProviderSpec is all the registry, connect, the command
line, the emulator and the contract suite need to pick it up."""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import rxllm
from rxllm import config, registry
from rxllm.connect import connect
from rxllm.emulator import Emulator
from rxllm.errors import ConfigurationError
from rxllm.testing import EMULATOR_KEY
from rxllm.vendors import BUILTIN_SPECS, OPENAI_MAPPER, ProviderSpec
from tests.contract import test_provider_contract as contract

NEWCO = ProviderSpec(
    name="newco",
    mapper=OPENAI_MAPPER,
    aliases=("nc",),
    key_env=("NEWCO_API_KEY",),
    base_url_env="NEWCO_BASE_URL",
    base_url="https://api.newco.invalid/v1",
    default_model="newco-1",
    emulator="openai",
)
PLUGIN_SITE = Path(contract.__file__).parent / "plugin_site"
ROOT = Path(__file__).parent.parent


@pytest.fixture
def newco(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderSpec]:
    """NEWCO registered in code for one test; no key for it anywhere."""
    monkeypatch.delenv("NEWCO_API_KEY", raising=False)
    monkeypatch.delenv("NEWCO_BASE_URL", raising=False)
    saved = dict(registry._registry.registered)
    registry.register(NEWCO)
    yield NEWCO
    registry._registry.registered.clear()
    registry._registry.registered.update(saved)


def test_each_vendor_is_declared_once() -> None:
    names = [name for spec in BUILTIN_SPECS for name in spec.names]
    assert len(names) == len(set(names))
    for spec in BUILTIN_SPECS:
        cls = registry.provider_class(spec.name)
        if spec.mapper != OPENAI_MAPPER:
            assert cls.spec is spec  # the mapper class declares no second copy of it


def test_a_spec_is_enough_for_the_registry(newco: ProviderSpec) -> None:
    assert "newco" in registry.provider_names()
    assert registry.canonical_name("NC") == "newco"
    assert registry.spec("nc") is newco
    bound = registry.model("nc:newco-1", api_key="k")
    assert (bound.spec, bound.provider.base_url) == ("newco:newco-1", newco.base_url)
    assert type(bound.provider).__name__ == "OpenAIProvider"


def test_a_spec_is_enough_for_configuration(
    newco: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RXLLM_NEWCO__TIMEOUT", "7")
    monkeypatch.setenv("RXLLM_NC__DEFAULT_MODEL", "newco-2")
    monkeypatch.setenv("NEWCO_API_KEY", "newco-key")
    built = registry.provider("newco")
    assert (built.timeout, built.default_model) == (7.0, "newco-2")
    assert built.api_key.get_secret_value() == "newco-key"
    assert config.resolve_credentials(newco).key_source == "NEWCO_API_KEY"


def test_a_missing_key_names_the_spec_variables(newco: ProviderSpec) -> None:
    with pytest.raises(ConfigurationError, match="set NEWCO_API_KEY or pass api_key="):
        registry.model("newco:newco-1")


async def test_a_spec_is_enough_for_connect_and_the_emulator(newco: ProviderSpec) -> None:
    said: list[str] = []
    async with connect("newco:newco-1", notice=said.append) as (bound,):
        emulator = bound.provider  # routed to the emulator's OpenAI dialect
        assert emulator.base_url is not None
        assert emulator.base_url.endswith("/openai/v1")
        result = await bound.complete("Hi", max_tokens=3)
    assert result.usage.completion_tokens == 3
    assert result.provider == "newco"
    assert said == [f"newco: no NEWCO_API_KEY set, using the local emulator at {emulator.base_url}"]


async def test_the_emulator_points_a_specs_variables_at_its_dialect(
    newco: ProviderSpec, emulator: Emulator
) -> None:
    env = emulator.env()
    assert env["NEWCO_BASE_URL"] == emulator.base_url("openai") == emulator.base_url("nc")
    assert env["XAI_BASE_URL"] == emulator.base_url("grok")


def test_a_spec_is_enough_for_the_contract_suite(newco: ProviderSpec) -> None:
    reloaded = importlib.reload(contract)
    assert "newco" in reloaded.VENDORS
    emulated = {s.name for s in registry.specs() if s.emulator} - {"newco"}
    assert emulated <= set(reloaded.VENDORS)


def test_a_plugin_spec_is_enough_for_the_command_line(tmp_path: Path) -> None:
    """Installed as a package (an entry point naming a spec): ``rxllm`` lists it and streams
    from it, through the emulator since no key is set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(("_API_KEY", "_BASE_URL")) and not name.startswith("RXLLM_")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_SITE), str(ROOT)])
    listed = subprocess.run(
        [sys.executable, "-m", "rxllm.cli", "models", "acme-plugin"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "acme-plugin:<any model>" in listed.stdout
    streamed = subprocess.run(
        [sys.executable, "-m", "rxllm.cli", "stream", "Hi", "-m", "acme-plugin:acme-1"],
        env={**env, "COLUMNS": "200"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip()
    assert "acme-plugin: no ACME_PLUGIN_API_KEY set, using the local emulator" in streamed.stderr


# -- OpenAI-compatible servers ------------------------------------------------------------


def test_local_servers_need_no_key_and_have_their_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OLLAMA_API_KEY", "OLLAMA_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    bound = rxllm.model("ollama:llama3.2")  # any model: Ollama serves what was pulled
    assert bound.provider.base_url == "http://localhost:11434/v1"
    assert bound.provider.api_key.get_secret_value() == ""
    assert bound.info() is None


def test_openai_compatible_needs_a_base_url_and_takes_any_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_COMPATIBLE_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="pass base_url="):
        rxllm.provider("openai-compatible")
    bound = rxllm.model("openai-compatible:my-model", base_url="http://127.0.0.1:9/v1")
    assert (bound.provider.base_url, bound.spec) == (
        "http://127.0.0.1:9/v1",
        "openai-compatible:my-model",
    )


def test_a_custom_base_url_accepts_any_model_and_says_it_has_no_price(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match=r"unknown model 'llama3\.2'"):
        rxllm.model("openai:llama3.2", api_key="k")  # the real OpenAI: checked
    for _ in range(2):
        bound = rxllm.model("openai:llama3.2", api_key="k", base_url="http://127.0.0.1:9/v1")
    assert bound.info() is None
    warned = [r for r in caplog.records if "llama3.2" in r.getMessage()]
    assert len(warned) == 1
    assert "cost will be None" in warned[0].getMessage()


async def test_a_preset_streams_through_the_emulator_and_its_prices_apply(
    emulator: Emulator,
) -> None:
    bound = rxllm.model(
        "deepseek:deepseek-chat", api_key=EMULATOR_KEY, base_url=emulator.base_url("deepseek")
    )
    try:
        result = await bound.complete("Hi", max_tokens=4)
    finally:
        await bound.provider.aclose()
    usage = result.usage
    assert result.provider == "deepseek"
    assert usage.cost == pytest.approx(
        (usage.prompt_tokens * 0.28 + usage.completion_tokens * 0.42) / 1e6
    )
    assert emulator.requests[0].dialect == "openai"


def test_a_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        NEWCO.name = "other"  # type: ignore[misc]


# -- defaults that protect a user's wallet ---------------------------------------------------


async def test_claude_defaults_to_a_moderate_max_tokens_and_configuration_overrides_it(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = emulator.base_url("anthropic")
    claude = rxllm.model("anthropic:claude-sonnet-4-6", api_key=EMULATOR_KEY, base_url=url)
    monkeypatch.setenv("RXLLM_ANTHROPIC__MAX_TOKENS", "1000")
    configured = rxllm.model("claude:claude-sonnet-4-6", api_key=EMULATOR_KEY, base_url=url)
    try:
        await claude.complete("Hi")
        await configured.complete("Hi")
        await configured.complete("Hi", max_tokens=7)  # the request's own wins
    finally:
        await claude.provider.aclose()
        await configured.provider.aclose()
    sent = [request.body["max_tokens"] for request in emulator.requests]
    assert sent == [4096, 1000, 7]  # not the model's 64,000 maximum


def test_provider_names_still_works_after_a_provider_module_was_imported() -> None:
    # Regression: importing rxllm.providers.openai used to replace rxllm.providers().
    rxllm.model("openai:gpt-5-mini", api_key="k")
    importlib.import_module("rxllm.providers.openai")
    assert rxllm.provider_names()[:4] == ["anthropic", "openai", "gemini", "grok"]


async def test_a_collected_result_keeps_what_done_said(emulator: Emulator) -> None:
    claude = rxllm.model(
        "anthropic:claude-haiku-4-5", api_key=EMULATOR_KEY, base_url=emulator.base_url("claude")
    )
    try:
        result = await claude.complete("Hi", temperature=0.3, max_tokens=5)
    finally:
        await claude.provider.aclose()
    assert result.details["ignored"] == ("temperature",)  # Claude's API refuses temperature
    assert result.details["stop_reason"] == "max_tokens"

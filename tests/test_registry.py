"""The provider registry: names and aliases, plugins, model strings, bound models."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rxllm import catalog, config, registry
from rxllm.consume import collect
from rxllm.emulator import Emulator
from rxllm.errors import ConfigurationError
from rxllm.events import DoneEvent, FinishReason, StreamEvent, TokenEvent, Usage
from rxllm.provider import Provider
from rxllm.request import StreamRequest
from rxllm.testing import EMULATOR_KEY
from rxllm.vendors import BUILTIN_SPECS, OPENAI_MAPPER, ProviderSpec

BUILTINS = [spec.name for spec in BUILTIN_SPECS]
VENDOR_VARIABLES = [
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "XAI_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "GEMINI_BASE_URL",
    "XAI_BASE_URL",
    "ECHO_API_KEY",
    "ECHO_BASE_URL",
]


class EchoProvider(Provider[None]):
    """Replies with its prompt, one word a token; never touches a network."""

    name = "echo"
    aliases: ClassVar[tuple[str, ...]] = ("parrot",)
    api_key_env = ("ECHO_API_KEY",)
    base_url_env = "ECHO_BASE_URL"
    default_model = "echo-1"

    def _make_client(self) -> None:
        return None

    async def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        words = (request.prompt or "").split()
        for word in words:
            yield TokenEvent(word + " ")
        yield DoneEvent(
            Usage(prompt_tokens=len(words), completion_tokens=len(words)),
            FinishReason.STOP,
            request.model,
            self.name,
        )


class FakeAnthropic(EchoProvider):
    """Stands in for the real Anthropic provider: same name, so the catalog applies."""

    name = "anthropic"
    aliases = ("claude",)
    api_key_env = ("ANTHROPIC_API_KEY",)
    base_url_env = "ANTHROPIC_BASE_URL"
    default_model = "claude-sonnet-4-5"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No settings from the machine, and the registry as it was after each test."""
    for name in VENDOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in __import__("os").environ if n.startswith("RXLLM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    state = registry._registry
    saved = (dict(state.registered), dict(state.plugins), dict(state.builtins))
    config.configure(None)
    yield
    config.configure(None)
    state.registered.clear()
    state.registered.update(saved[0])
    state.plugins = saved[1]
    state.scanned = False
    state.builtins.clear()
    state.builtins.update(saved[2])


@pytest.fixture
def fake_anthropic() -> type[Provider[Any]]:
    return registry.register(FakeAnthropic, replace=True)


# -- names ------------------------------------------------------------------------------


def test_the_four_providers_are_registered_without_importing_their_sdks() -> None:
    code = (
        "import sys, rxllm.registry as r; "
        "print(r.provider_names()); print(r.canonical_name('xai')); "
        "print(sorted(m for m in ('anthropic', 'openai', 'google.genai', 'xai_sdk') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [str(BUILTINS), "grok", "[]"]


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("anthropic", "anthropic"),
        ("claude", "anthropic"),
        ("Claude", "anthropic"),
        ("openai", "openai"),
        ("gemini", "gemini"),
        ("google", "gemini"),
        ("grok", "grok"),
        ("xai", "grok"),
        (" xai ", "grok"),
    ],
)
def test_names_and_aliases(given: str, name: str) -> None:
    assert registry.canonical_name(given) == name


def test_an_unknown_provider_lists_the_known_names_and_aliases() -> None:
    with pytest.raises(ConfigurationError) as raised:
        registry.canonical_name("nosuch")
    message = str(raised.value)
    assert "'nosuch'" in message
    for name in [*BUILTINS, "claude", "google", "xai"]:
        assert name in message


# -- register -----------------------------------------------------------------------------


def test_register_adds_a_provider_with_its_aliases() -> None:
    assert registry.register(EchoProvider) is EchoProvider
    assert registry.provider_names() == [*BUILTINS, "echo"]
    assert registry.canonical_name("parrot") == "echo"
    assert registry.provider_class("parrot") is EchoProvider
    registry.register(EchoProvider)  # the same class again is fine


def test_register_works_as_a_decorator() -> None:
    @registry.register
    class Other(EchoProvider):
        name = "other"
        aliases = ()

    assert registry.provider_class("other") is Other


def test_register_refuses_to_take_a_name_silently() -> None:
    with pytest.raises(ConfigurationError, match=r"already registered.*replace=True"):
        registry.register(FakeAnthropic)
    registry.register(FakeAnthropic, replace=True)
    assert registry.provider_class("claude") is FakeAnthropic


def test_register_accepts_only_named_provider_classes() -> None:
    class NoName(EchoProvider):
        name = ""

    with pytest.raises(ConfigurationError, match="no 'name'"):
        registry.register(NoName)
    with pytest.raises(ConfigurationError, match="nor a rxllm Provider"):
        registry.register(object)  # type: ignore[arg-type]


def test_a_builtin_whose_module_is_missing_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = dataclasses.replace(registry.spec("grok"), mapper="rxllm.nowhere:Grok")
    monkeypatch.setattr(registry._registry.builtins["grok"], "target", broken)
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        registry.provider_class("xai")


# -- model strings --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["anthropic", "", ":claude-sonnet-4-5", "anthropic:", " : "])
def test_a_malformed_model_string_lists_the_known_providers(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="provider:model") as raised:
        registry.model(spec)
    assert all(name in str(raised.value) for name in BUILTINS)


def test_a_model_id_may_contain_colons() -> None:
    assert registry.parse_model_spec("openai:ft:gpt-4o-mini:acme::abc") == (
        "openai",
        "ft:gpt-4o-mini:acme::abc",
    )


def test_model_with_an_unknown_provider_lists_the_known_providers() -> None:
    with pytest.raises(ConfigurationError, match="unknown provider 'nosuch'") as raised:
        registry.model("nosuch:large")
    assert all(name in str(raised.value) for name in BUILTINS)


def test_an_unknown_model_lists_the_providers_models(fake_anthropic: type[Provider[Any]]) -> None:
    with pytest.raises(ConfigurationError, match="unknown model 'claude-sonnet-9'") as raised:
        registry.model("anthropic:claude-sonnet-9", api_key="k")
    message = str(raised.value)
    assert "claude-sonnet-4-5" in message
    assert "claude-haiku-4-5" in message
    assert "allow_unknown_model=True" in message
    assert raised.value.provider == "anthropic"


def test_the_model_is_checked_before_the_provider_is_built(
    fake_anthropic: type[Provider[Any]],
) -> None:
    # No key anywhere: had the provider been built first, this would be the missing-key error.
    with pytest.raises(ConfigurationError, match="unknown model"):
        registry.model("anthropic:claude-sonnet-9")


def test_allow_unknown_model(fake_anthropic: type[Provider[Any]]) -> None:
    bound = registry.model("anthropic:claude-sonnet-9", api_key="k", allow_unknown_model=True)
    assert bound.name == "claude-sonnet-9"
    assert bound.info() is None


@pytest.mark.parametrize(
    "spec",
    [
        "anthropic:claude-sonnet-4-5",
        "claude:claude-haiku-4-5",
        "anthropic:claude-sonnet-4-5-20250929",
        "anthropic:claude-sonnet-4-5~fault=drop,after=5",
    ],
)
def test_known_models_snapshots_and_emulator_knobs_pass_the_check(
    fake_anthropic: type[Provider[Any]], spec: str
) -> None:
    bound = registry.model(spec, api_key="k")
    assert isinstance(bound.provider, FakeAnthropic)
    assert bound.spec == f"anthropic:{spec.partition(':')[2]}"


def test_a_provider_the_catalog_does_not_know_takes_any_model() -> None:
    registry.register(EchoProvider)
    assert registry.model("parrot:whatever-7", api_key="k").spec == "echo:whatever-7"


# -- bound models ---------------------------------------------------------------------------


async def test_a_bound_model_streams_completes_and_generates(
    fake_anthropic: type[Provider[Any]],
) -> None:
    bound = registry.model("claude:claude-haiku-4-5", api_key="k")
    stream = bound.stream("one two three", max_tokens=5)
    assert stream.request.model == "claude-haiku-4-5"
    assert stream.request.max_tokens == 5
    result = await collect(stream)
    assert result.text == "one two three "
    # Cost from the catalog: 3 prompt tokens at $1/M, 3 output tokens at $5/M.
    assert result.usage.cost == pytest.approx((3 * 1.0 + 3 * 5.0) / 1e6)
    assert (await bound.complete("a b")).model == "claude-haiku-4-5"
    assert await bound.generate("hello there") == "hello there "


async def test_a_bound_model_overrides_the_model_of_a_request(
    fake_anthropic: type[Provider[Any]],
) -> None:
    bound = registry.model("anthropic:claude-opus-4-5", api_key="k")
    request = StreamRequest(model="claude-haiku-4-5", prompt="hi", temperature=0.5)
    built = bound.stream(request).request
    assert (built.model, built.temperature) == ("claude-opus-4-5", 0.5)


def test_a_bound_model_does_not_show_or_pickle_its_key(
    fake_anthropic: type[Provider[Any]],
) -> None:
    import pickle

    bound = registry.model("anthropic:claude-sonnet-4-5", api_key="sk-ant-very-secret")
    assert repr(bound) == "BoundModel('anthropic:claude-sonnet-4-5')"
    assert "very-secret" not in repr(bound.provider) + str(bound.provider)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(bound)


# -- plugins (entry points) ----------------------------------------------------------------


def _install_plugin(
    root: Path, monkeypatch: pytest.MonkeyPatch, *, entry_points: str, module: str = ""
) -> None:
    """A package installed in ``root`` the way pip would: a module and its dist-info."""
    (root / "acme_rxllm.py").write_text(textwrap.dedent(module))
    info = root / "acme_rxllm-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rxllm\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "acme_rxllm", raising=False)


PLUGIN_MODULE = """
    from tests.test_registry import EchoProvider

    class AcmeProvider(EchoProvider):
        name = "acme"
        aliases = ("roadrunner",)
        api_key_env = ("ACME_API_KEY",)
        base_url_env = None
        default_model = "acme-1"

    class Misnamed(EchoProvider):
        name = "not-acme"
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    yield root
    sys.modules.pop("acme_rxllm", None)
    importlib.invalidate_caches()


async def test_an_entry_point_registers_a_third_party_provider(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(
        plugin_dir,
        monkeypatch,
        entry_points="[rxllm.providers]\nacme = acme_rxllm:AcmeProvider\n",
        module=PLUGIN_MODULE,
    )
    assert registry.provider_names() == [*BUILTINS, "acme"]
    assert "acme_rxllm" not in sys.modules  # listing does not import the plugin
    monkeypatch.setenv("ACME_API_KEY", "acme-key")
    bound = registry.model("acme:acme-2")
    assert type(bound.provider).__name__ == "AcmeProvider"
    assert await bound.generate("beep beep") == "beep beep "
    assert registry.canonical_name("roadrunner") == "acme"


def test_a_broken_entry_point_fails_only_when_it_is_used(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(
        plugin_dir,
        monkeypatch,
        entry_points=(
            "[rxllm.providers]\n"
            "gone = acme_rxllm:Missing\n"
            "not-acme = acme_rxllm:Misnamed\n"
            "wrong = acme_rxllm:AcmeProvider\n"
        ),
        module=PLUGIN_MODULE,
    )
    assert registry.provider_names() == [*BUILTINS, "gone", "not-acme", "wrong"]
    with pytest.raises(ConfigurationError, match=r"'gone'.*acme-rxllm.*cannot be loaded"):
        registry.provider_class("gone")
    with pytest.raises(ConfigurationError, match="registered as 'wrong'"):
        registry.provider_class("wrong")
    assert registry.provider_class("not-acme").__name__ == "Misnamed"
    assert registry.canonical_name("openai") == "openai"  # the others are unaffected


def test_builtins_win_over_a_plugin_of_the_same_name(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(
        plugin_dir,
        monkeypatch,
        entry_points="[rxllm.providers]\nopenai = acme_rxllm:AcmeProvider\n",
        module=PLUGIN_MODULE,
    )
    assert registry.provider_names() == BUILTINS
    assert registry._registry.entries()["openai"].origin == "rxllm"


# -- the real providers against the emulator ------------------------------------------------

FOUR = ["anthropic", "openai", "gemini", "grok"]
SPECS = {
    "anthropic": "anthropic:claude-haiku-4-5",
    "openai": "openai:gpt-5-mini",
    "gemini": "gemini:gemini-2.5-flash",
    "grok": "xai:grok-3-mini",
}


@pytest.mark.parametrize("spec", BUILTIN_SPECS, ids=lambda s: s.name)
def test_every_builtin_spec_loads_its_mapper_and_names_its_own_vendor(spec: ProviderSpec) -> None:
    cls = registry.provider_class(spec.name)
    assert registry.spec(spec.name) is spec
    assert cls.spec.mapper in (spec.mapper, OPENAI_MAPPER)
    if spec.default_model is not None and catalog.models(spec.name):
        assert catalog.info(spec.name, spec.default_model) is not None


@pytest.mark.parametrize("name", FOUR)
async def test_a_model_string_streams_from_the_emulator(emulator: Emulator, name: str) -> None:
    bound = registry.model(SPECS[name], api_key=EMULATOR_KEY, base_url=emulator.base_url(name))
    result = await bound.complete("Say something", max_tokens=40)
    assert result.text
    assert result.usage.cost is not None
    assert result.usage.cost > 0
    await bound.provider.aclose()


@pytest.mark.parametrize("name", FOUR)
async def test_the_vendor_environment_variables_reach_the_real_provider(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for variable, value in emulator.env().items():
        monkeypatch.setenv(variable, value)
    bound = registry.model(SPECS[name])
    assert bound.provider.base_url == emulator.base_url(name)
    assert await bound.generate("Say something", max_tokens=20)
    await bound.provider.aclose()

"""Settings: sources and their precedence, phases, and API keys that never leak."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rxllm import config, registry
from rxllm.config import ProviderSettings, Settings, load_settings
from rxllm.emulator import Emulator
from rxllm.errors import ConfigurationError
from rxllm.events import DoneEvent, FinishReason, StreamEvent, TokenEvent, Usage
from rxllm.provider import Provider
from rxllm.registry import model_for_phase
from rxllm.request import StreamRequest
from rxllm.testing import EMULATOR_KEY
from rxllm.vendors import BUILTIN_SPECS

SECRET = "sk-live-DO-NOT-PRINT-4f9a"
OTHER_SECRET = "sk-other-DO-NOT-PRINT-77b1"

VENDOR_VARIABLES = [
    name
    for spec in BUILTIN_SPECS
    for name in (*spec.key_env, spec.base_url_env)
    if name is not None
]


class EchoProvider(Provider[None]):
    name = "echo"
    aliases: ClassVar[tuple[str, ...]] = ("parrot",)
    api_key_env = ("ECHO_API_KEY",)
    base_url_env = "ECHO_BASE_URL"
    default_model = "echo-1"

    def _make_client(self) -> None:
        return None

    async def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        yield TokenEvent(request.model)
        yield DoneEvent(Usage(), FinishReason.STOP, request.model, self.name)


class FakeAnthropic(EchoProvider):
    name = "anthropic"
    aliases = ("claude",)
    api_key_env = ("ANTHROPIC_API_KEY",)
    base_url_env = "ANTHROPIC_BASE_URL"
    default_model = "claude-sonnet-4-5"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Nothing from the machine: no vendor or RXLLM_ variables, an empty working directory."""
    for name in [*VENDOR_VARIABLES, "ECHO_API_KEY", "ECHO_BASE_URL"]:
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.upper().startswith("RXLLM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    saved = dict(registry._registry.registered)
    config.configure(None)
    yield
    config.configure(None)
    registry._registry.registered.clear()
    registry._registry.registered.update(saved)


@pytest.fixture
def echo() -> None:
    registry.register(EchoProvider)


@pytest.fixture
def fake_anthropic() -> None:
    registry.register(FakeAnthropic, replace=True)


def write(path: Path | str, text: str) -> Path:
    target = Path(path)
    target.write_text(text)
    return target


# -- sources ------------------------------------------------------------------------------


def test_nothing_configured_means_nothing_set() -> None:
    settings = load_settings()
    for name in ("anthropic", "openai", "gemini", "grok"):
        assert settings.provider(name) == ProviderSettings()
    assert settings.phases == {}


def _credentials(name: str, **given: Any) -> config.Credentials:
    return config.resolve_credentials(registry.spec(name), **given)


def test_vendor_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a-key")
    monkeypatch.setenv("OPENAI_API_KEY", "o-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    monkeypatch.setenv("XAI_API_KEY", "x-key")
    monkeypatch.setenv("XAI_BASE_URL", "127.0.0.1:9")
    monkeypatch.setenv("GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "")  # empty means unset
    anthropic = _credentials("anthropic")
    assert (_key(anthropic), anthropic.base_url, anthropic.key_source) == (
        "a-key",
        None,
        "ANTHROPIC_API_KEY",
    )
    assert _key(_credentials("openai")) == "o-key"
    assert _credentials("openai").base_url == "http://127.0.0.1:9/v1"
    assert (_key(_credentials("google")), _credentials("gemini").key_source) == (
        "g-key",
        "GOOGLE_API_KEY",
    )
    assert _credentials("gemini").base_url == "http://127.0.0.1:9"
    assert _key(_credentials("xai")) == "x-key"
    assert _credentials("grok").base_url == "127.0.0.1:9"


def test_arguments_win_and_a_spec_supplies_its_default_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "o-key")
    given = _credentials("openai", api_key="mine", base_url="http://127.0.0.1:1/v1")
    assert (_key(given), given.base_url, given.key_source) == (
        "mine",
        "http://127.0.0.1:1/v1",
        "api_key=",
    )
    local = _credentials("ollama")
    assert (local.api_key, local.base_url) == (None, "http://localhost:11434/v1")
    assert "o-key" not in repr(_credentials("openai"))


def test_gemini_api_key_is_preferred_to_google_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "google")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini")
    assert _key(_credentials("gemini")) == "gemini"


def test_rxllm_environment_variables_nest_with_double_underscores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RXLLM_ANTHROPIC__TIMEOUT", "12.5")
    monkeypatch.setenv("RXLLM_OPENAI__REQUESTS_PER_MINUTE", "60")
    monkeypatch.setenv("RXLLM_OPENAI__TOKENS_PER_MINUTE", "90000")
    monkeypatch.setenv("RXLLM_GROK__DEFAULT_MODEL", "grok-3-mini")
    monkeypatch.setenv("rxllm_phases__plan", "anthropic:claude-opus-4-5")
    settings = load_settings()
    assert settings.provider("anthropic").timeout == 12.5
    assert settings.provider("openai").requests_per_minute == 60
    assert settings.provider("openai").tokens_per_minute == 90_000
    assert settings.provider("grok").default_model == "grok-3-mini"
    assert settings.phases == {"plan": "anthropic:claude-opus-4-5"}


RXLLM_TOML = """
[anthropic]
default_model = "claude-opus-4-5"
timeout = 60
requests_per_minute = 50
tokens_per_minute = 40_000

[openai]
base_url = "http://127.0.0.1:1/v1"

[phases]
plan = "anthropic:claude-opus-4-5"
qa = "gemini:gemini-2.5-pro"
"""


def test_rxllm_toml_in_the_working_directory() -> None:
    write("rxllm.toml", RXLLM_TOML)
    settings = load_settings()
    anthropic = settings.provider("anthropic")
    assert anthropic.default_model == "claude-opus-4-5"
    assert (anthropic.timeout, anthropic.requests_per_minute) == (60, 50)
    assert anthropic.tokens_per_minute == 40_000
    assert settings.provider("openai").base_url == "http://127.0.0.1:1/v1"
    assert settings.phase_model("qa") == "gemini:gemini-2.5-pro"


def test_rxllm_config_names_another_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write("rxllm.toml", '[phases]\nplan = "openai:gpt-5"\n')
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    monkeypatch.setenv("RXLLM_CONFIG", str(write(elsewhere / "team.toml", RXLLM_TOML)))
    assert load_settings().phase_model("plan") == "anthropic:claude-opus-4-5"


def test_a_missing_rxllm_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXLLM_CONFIG", "nowhere.toml")
    with pytest.raises(ConfigurationError, match=r"RXLLM_CONFIG.*nowhere\.toml"):
        load_settings()


def test_load_settings_reads_a_given_file(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.toml", '[grok]\ndefault_model = "grok-4-fast-reasoning"\n')
    assert load_settings(path).provider("grok").default_model == "grok-4-fast-reasoning"
    with pytest.raises(ConfigurationError, match="not a file"):
        load_settings(tmp_path / "absent.toml")


def test_tool_rxllm_in_pyproject() -> None:
    write(
        "pyproject.toml",
        '[project]\nname = "app"\n\n[tool.rxllm.gemini]\ntimeout = 7\n\n'
        '[tool.rxllm.phases]\nimplement = "openai:gpt-4.1"\n',
    )
    settings = load_settings()
    assert settings.provider("gemini").timeout == 7
    assert settings.phase_model("implement") == "openai:gpt-4.1"


def test_a_pyproject_without_rxllm_settings_is_fine() -> None:
    write("pyproject.toml", '[project]\nname = "app"\n[tool.ruff]\nline-length = 100\n')
    assert load_settings().phases == {}


def test_precedence_explicit_then_environment_then_rxllm_toml_then_pyproject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(
        "pyproject.toml",
        "[tool.rxllm.anthropic]\ntimeout = 1\nrequests_per_minute = 1\n"
        'tokens_per_minute = 1\ndefault_model = "claude-haiku-4-5"\n',
    )
    write(
        "rxllm.toml", "[anthropic]\ntimeout = 2\nrequests_per_minute = 2\ntokens_per_minute = 2\n"
    )
    monkeypatch.setenv("RXLLM_ANTHROPIC__TIMEOUT", "3")
    monkeypatch.setenv("RXLLM_ANTHROPIC__REQUESTS_PER_MINUTE", "3")
    anthropic = load_settings(anthropic={"timeout": 4}).provider("anthropic")
    assert anthropic.timeout == 4  # explicit
    assert anthropic.requests_per_minute == 3  # environment
    assert anthropic.tokens_per_minute == 2  # rxllm.toml
    assert anthropic.default_model == "claude-haiku-4-5"  # pyproject.toml


def test_vendor_variables_win_over_rxllm_variables_and_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write("rxllm.toml", f'[openai]\napi_key = "{OTHER_SECRET}"\n')
    assert _key(_credentials("openai")) == OTHER_SECRET
    assert _credentials("openai").key_source == "settings"
    monkeypatch.setenv("RXLLM_OPENAI__API_KEY", "from-rxllm-variable")
    assert _key(_credentials("openai")) == "from-rxllm-variable"
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert _key(_credentials("openai")) == SECRET


def test_an_alias_table_serves_its_provider() -> None:
    write(
        "rxllm.toml",
        '[xai]\ndefault_model = "grok-3-mini"\ntimeout = 5\n\n[grok]\ntimeout = 9\n',
    )
    grok = load_settings().provider("grok", "xai")
    assert (grok.default_model, grok.timeout) == ("grok-3-mini", 9)  # the name wins per field


def test_a_third_party_provider_table() -> None:
    write("rxllm.toml", '[echo]\nbase_url = "http://127.0.0.1:2"\nrequests_per_minute = 5\n')
    echo = load_settings().provider("echo")
    assert (echo.base_url, echo.requests_per_minute) == ("http://127.0.0.1:2", 5)


@pytest.mark.parametrize(
    ("toml", "complaint"),
    [
        ("[anthropic]\ntimout = 3\n", "anthropic.timout"),
        ("[openai]\ntimeout = -1\n", "openai.timeout"),
        ("[gemini]\nrequests_per_minute = 0\n", "gemini.requests_per_minute"),
        ('[phases]\nplan = "claude-opus-4-5"\n', "provider:model"),
        ("[phase]\nplan = 'anthropic:claude-opus-4-5'\n", "phase.plan"),
        ("[anthropic\n", "rxllm.toml is not valid TOML"),
    ],
)
def test_bad_settings_are_configuration_errors_that_say_where(toml: str, complaint: str) -> None:
    write("rxllm.toml", toml)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert complaint in str(raised.value)


def test_settings_are_read_afresh_until_configure_installs_some() -> None:
    assert config.settings().phases == {}
    write("rxllm.toml", '[phases]\nplan = "openai:gpt-5"\n')
    assert config.settings().phase_model("plan") == "openai:gpt-5"
    installed = config.configure(phases={"plan": "anthropic:claude-opus-4-5"})
    write("rxllm.toml", '[phases]\nplan = "gemini:gemini-2.5-pro"\n')
    assert config.settings() is installed
    assert config.settings().phase_model("plan") == "anthropic:claude-opus-4-5"
    config.configure(None)
    assert config.settings().phase_model("plan") == "gemini:gemini-2.5-pro"
    own = Settings(phases={"qa": "openai:gpt-5"})
    assert config.configure(own) is config.settings() is own
    with pytest.raises(TypeError):
        config.configure(own, phases={})


# -- providers built from settings ---------------------------------------------------------


def test_settings_fill_what_provider_is_not_given(fake_anthropic: None) -> None:
    write(
        "rxllm.toml",
        f'[claude]\napi_key = "{SECRET}"\nbase_url = "http://127.0.0.1:3"\ntimeout = 8\n'
        'default_model = "claude-opus-4-5"\n',
    )
    built = registry.provider("anthropic")
    assert built.api_key.get_secret_value() == SECRET
    assert (built.base_url, built.timeout) == ("http://127.0.0.1:3", 8)
    assert built.default_model == "claude-opus-4-5"
    assert built.request("hi").model == "claude-opus-4-5"
    assert FakeAnthropic.default_model == "claude-sonnet-4-5"  # the class is untouched


def test_explicit_arguments_win_over_settings(fake_anthropic: None) -> None:
    write("rxllm.toml", f'[anthropic]\napi_key = "{SECRET}"\nbase_url = "http://a"\ntimeout = 8\n')
    built = registry.provider(
        "claude", api_key=OTHER_SECRET, base_url="http://b", timeout=2, default_model="x"
    )
    assert built.api_key.get_secret_value() == OTHER_SECRET
    assert (built.base_url, built.timeout, built.default_model) == ("http://b", 2, "x")


def test_a_third_party_providers_own_variable_wins_over_the_file(
    echo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("rxllm.toml", f'[echo]\napi_key = "{OTHER_SECRET}"\nbase_url = "http://file"\n')
    assert registry.provider("echo").api_key.get_secret_value() == OTHER_SECRET
    monkeypatch.setenv("ECHO_API_KEY", SECRET)
    monkeypatch.setenv("ECHO_BASE_URL", "http://env")
    built = registry.provider("parrot")
    assert (built.api_key.get_secret_value(), built.base_url) == (SECRET, "http://env")


def test_given_settings_are_used_instead_of_the_sources(fake_anthropic: None) -> None:
    write("rxllm.toml", "[anthropic]\ntimeout = 8\n")
    mine = Settings(anthropic={"api_key": SECRET, "timeout": 1})
    assert registry.provider("anthropic", settings=mine).timeout == 1


@pytest.mark.parametrize(
    ("name", "variables"),
    [
        ("anthropic", ["ANTHROPIC_API_KEY"]),
        ("openai", ["OPENAI_API_KEY"]),
        ("gemini", ["GEMINI_API_KEY", "GOOGLE_API_KEY"]),
        ("grok", ["XAI_API_KEY"]),
    ],
)
def test_a_missing_key_names_the_variable_to_set(name: str, variables: list[str]) -> None:
    pytest.importorskip(f"rxllm.providers.{name}", exc_type=ImportError)
    with pytest.raises(ConfigurationError) as raised:
        registry.provider(name)
    for variable in variables:
        assert variable in str(raised.value)


def test_a_missing_key_names_a_third_party_variable(echo: None) -> None:
    with pytest.raises(ConfigurationError, match="ECHO_API_KEY"):
        registry.model("echo:echo-1")


# -- phases -------------------------------------------------------------------------------


def test_model_for_phase_binds_the_configured_model(fake_anthropic: None) -> None:
    write("rxllm.toml", f'[anthropic]\napi_key = "{SECRET}"\n{RXLLM_TOML.split("[openai]")[1]}')
    write("rxllm.toml", f'[anthropic]\napi_key = "{SECRET}"\n[phases]\n' + _phases())
    plan = model_for_phase("plan")
    assert plan.spec == "anthropic:claude-opus-4-5"
    assert isinstance(plan.provider, FakeAnthropic)
    assert model_for_phase("creative").spec == "anthropic:claude-haiku-4-5"  # the default


def _phases() -> str:
    return 'plan = "anthropic:claude-opus-4-5"\ndefault = "claude:claude-haiku-4-5"\n'


def test_an_unmapped_phase_of_your_own_says_how_to_map_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings().phase_model("review")
    message = str(raised.value)
    assert "[phases]" in message
    assert "RXLLM_PHASES__REVIEW" in message


def test_the_four_phases_have_documented_defaults() -> None:
    assert Settings().phase_model("plan") == "gemini:gemini-2.5-pro"
    assert Settings().phase_model("qa") == "openai:gpt-5-mini"
    assert Settings(phases={"qa": "grok:grok-4"}).phase_model("qa") == "grok:grok-4"


def test_a_phase_mapped_to_an_unknown_model_lists_the_known_ones(fake_anthropic: None) -> None:
    config.configure(phases={"qa": "anthropic:claude-sonnet-9"})
    with pytest.raises(ConfigurationError, match=r"unknown model.*claude-sonnet-4-5"):
        model_for_phase("qa", api_key=SECRET)
    assert model_for_phase("qa", api_key=SECRET, allow_unknown_model=True).name == (
        "claude-sonnet-9"
    )


def test_model_for_phase_with_given_settings(fake_anthropic: None) -> None:
    mine = Settings(phases={"implement": "anthropic:claude-sonnet-4-5"})
    assert model_for_phase("implement", settings=mine, api_key=SECRET).name == ("claude-sonnet-4-5")


async def test_model_for_phase_streams_from_the_emulator(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("rxllm.providers.openai", exc_type=ImportError)
    monkeypatch.setenv("OPENAI_API_KEY", EMULATOR_KEY)
    write(
        "pyproject.toml",
        f'[tool.rxllm.openai]\nbase_url = "{emulator.base_url("openai")}"\n'
        '[tool.rxllm.phases]\nqa = "openai:gpt-5-mini"\n',
    )
    qa = model_for_phase("qa")
    result = await qa.complete("Check this", max_tokens=20)
    assert result.text
    assert result.usage.cost is not None
    await qa.provider.aclose()


# -- secrets ------------------------------------------------------------------------------


def _everywhere(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("RXLLM_ANTHROPIC__API_KEY", SECRET)
    write("rxllm.toml", f'[openai]\napi_key = "{OTHER_SECRET}"\n\n[xai]\napi_key = "{SECRET}"\n')
    return load_settings()


def test_keys_never_show_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _everywhere(monkeypatch)
    assert _key(settings.provider("openai")) == OTHER_SECRET  # they are there...
    anthropic = settings.provider("anthropic")
    shown = [repr(settings), str(settings), repr(anthropic), str(settings.provider("openai"))]
    shown += [repr(settings.provider("grok", "xai")), settings.model_dump_json()]
    shown += [str(settings.model_dump()), f"{settings}", f"{anthropic!r}"]
    shown += [repr(_credentials("anthropic")), str(_credentials("openai"))]
    for text in shown:  # ...but never shown
        assert SECRET not in text
        assert OTHER_SECRET not in text


def test_pickled_settings_leave_the_keys_out(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _everywhere(monkeypatch)
    data = pickle.dumps(settings)
    assert SECRET.encode() not in data
    assert OTHER_SECRET.encode() not in data
    restored = pickle.loads(data)
    assert restored.provider("anthropic").api_key is None
    assert restored.provider("openai") == ProviderSettings()
    assert settings.provider("anthropic").api_key is not None  # the original keeps its key
    single = pickle.dumps(settings.provider("anthropic"))
    assert SECRET.encode() not in single


def test_providers_never_show_their_key(fake_anthropic: None) -> None:
    built = registry.provider("anthropic", api_key=SECRET)
    assert SECRET not in repr(built)
    assert SECRET not in str(built)
    with pytest.raises(TypeError):
        pickle.dumps(built)


def test_keys_never_reach_the_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fake_anthropic: None
) -> None:
    with caplog.at_level(logging.DEBUG):
        _everywhere(monkeypatch)
        registry.model("anthropic:claude-sonnet-4-5")
        config.settings()
    assert caplog.records  # settings loading is logged...
    assert SECRET not in caplog.text
    assert OTHER_SECRET not in caplog.text


@pytest.mark.parametrize(
    "toml",
    [
        f'[anthropic]\napi_key = "{SECRET}"\ntimeout = "soon"\n',
        f'[anthropic]\napi_key = "{SECRET}"\nextra = "{SECRET}"\n',
        f'anthropic = "{SECRET}"\n',
        f'[anthropic]\napi_key = ["{SECRET}"]\n',
        f'[phases]\nplan = "{SECRET}"\n',
    ],
)
def test_error_messages_never_contain_a_key(toml: str) -> None:
    write("rxllm.toml", toml)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    _assert_no_secret_in(raised.value)


def test_errors_after_a_key_was_given_never_contain_it(fake_anthropic: None) -> None:
    for build in (
        lambda: registry.model("anthropic:claude-sonnet-9", api_key=SECRET),
        lambda: registry.model(f"anthropic:{SECRET}", api_key=SECRET),
        lambda: registry.model("nosuch:large", api_key=SECRET),
        lambda: Settings(anthropic={"api_key": SECRET, "timeout": "later"}),
    ):
        with pytest.raises(ConfigurationError) as raised:
            build()
        _assert_no_secret_in(raised.value, but_maybe_model=True)


def _assert_no_secret_in(error: BaseException, *, but_maybe_model: bool = False) -> None:
    texts = [str(error), repr(error)]
    cause: BaseException | None = error.__cause__ or error.__context__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    for text in texts:
        if but_maybe_model:
            # A key pasted as a model id is the user's own text, echoed as the model.
            text = text.replace(f"anthropic:{SECRET}", "").replace(f"'{SECRET}'", "")
        assert SECRET not in text


def _key(settings: ProviderSettings) -> Any:
    return settings.api_key.get_secret_value() if settings.api_key else None

"""rxllm's settings: API keys, base URLs, defaults, limits and the phase → model map.

Settings are read, in order of precedence (the first that sets a value wins):

1. explicit arguments: ``rxllm.provider("openai", api_key=...)``,
   ``load_settings(anthropic={"timeout": 30})``, or settings installed with
   :func:`configure`;
2. environment variables: for an API key or base URL, the vendor's own
   (``ANTHROPIC_API_KEY``, ``XAI_BASE_URL``...: each vendor's
   :class:`~rxllm.vendors.ProviderSpec` names them; read by
   :func:`resolve_credentials`), then ``RXLLM_*`` for everything, nested with
   ``__``: ``RXLLM_ANTHROPIC__TIMEOUT=30``, ``RXLLM_GROK__DEFAULT_MODEL=grok-4``,
   ``RXLLM_OLLAMA__BASE_URL=http://gpu-box:11434/v1``,
   ``RXLLM_PHASES__PLAN=anthropic:claude-opus-4-5``;
3. ``rxllm.toml`` in the working directory, or the file named by ``RXLLM_CONFIG``
   (which must then exist);
4. ``[tool.rxllm]`` in ``pyproject.toml`` in the working directory.

API keys and base URLs are resolved in exactly one place, :func:`resolve_credentials`;
providers receive the resolved values.

Nothing is cached: each :func:`settings` call (and so each ``rxllm.provider``
or ``rxllm.model``) reads the sources afresh, unless :func:`configure` has
installed settings for the process.

The TOML shape (in ``pyproject.toml``, put the same tables under ``tool.rxllm``:
``[tool.rxllm.anthropic]``, ``[tool.rxllm.phases]``)::

    # rxllm.toml
    [anthropic]                      # one table per provider, by registry name or alias
    default_model = "claude-opus-4-5"  # (anthropic, claude, openai, ollama, xai, ...)
    timeout = 60
    max_tokens = 2000                # for requests that set none (Claude: 4096 unless set)
    requests_per_minute = 50
    tokens_per_minute = 40_000

    [openai]
    base_url = "http://127.0.0.1:8000/v1"   # what the SDK means by base_url
    api_key = "sk-..."               # possible, but prefer OPENAI_API_KEY

    [phases]                         # phase -> "provider:model", read by model_for_phase
    plan = "anthropic:claude-opus-4-5"
    creative = "openai:gpt-5"
    implement = "anthropic:claude-sonnet-4-5"
    qa = "gemini:gemini-2.5-pro"
    default = "openai:gpt-5-mini"    # optional: any phase not listed above

    [capabilities.qa]                # phase -> capability -> system prompt (rxllm.phases)
    security = "You review code for security flaws. List each with its fix."

Every provider table takes ``api_key``, ``base_url``, ``default_model``,
``timeout`` (seconds, a limit per read, 300 unless set), ``max_connections`` (concurrent
streams, 100 unless set; more wait their turn), ``max_tokens``, ``requests_per_minute``
and ``tokens_per_minute``; unknown keys are errors, so a typo does not pass silently.

API keys are :class:`pydantic.SecretStr`: they never appear in a ``repr``, a
``str``, a log line or an error message, and pickled settings leave them out
(an unpickled copy has no keys; it reads them from its environment again when
used through :func:`rxllm.provider`).

Example:
    >>> import rxllm
    >>> rxllm.config.settings().provider("anthropic").timeout
    >>> rxllm.config.settings().phase_model("plan")
    'anthropic:claude-opus-4-5'
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from .errors import ConfigurationError
from .redaction import check_api_key
from .vendors import ProviderSpec

__all__ = [
    "CONFIG_ENV",
    "PHASES",
    "Credentials",
    "Phase",
    "ProviderSettings",
    "Settings",
    "configure",
    "load_settings",
    "resolve_credentials",
    "settings",
]

logger = logging.getLogger("rxllm.config")

Phase: TypeAlias = Literal["plan", "creative", "implement", "qa"]
PHASES: tuple[Phase, ...] = ("plan", "creative", "implement", "qa")
"""The flow's phases; ``[phases]`` may also name others, and a ``default``."""

CONFIG_ENV = "RXLLM_CONFIG"
"""Environment variable naming a TOML file to read instead of ``./rxllm.toml``."""

CONFIG_FILE = "rxllm.toml"


class ProviderSettings(BaseModel):
    """Settings for one provider; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    base_url: str | None = None
    default_model: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    """Seconds: the longest wait for the next read (a limit per read; default
    :data:`~rxllm.vendors.DEFAULT_TIMEOUT`)."""
    max_connections: int | None = Field(default=None, gt=0)
    """Concurrent streams per event loop; more wait for a free slot (default
    :data:`~rxllm.vendors.DEFAULT_MAX_CONNECTIONS`)."""
    max_tokens: int | None = Field(default=None, gt=0)
    """``max_tokens`` for requests that set none."""
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)

    def merged(self, fallback: ProviderSettings) -> ProviderSettings:
        """These settings, with fields left unset taken from ``fallback``."""
        mine = self.model_dump(exclude_none=True)
        return ProviderSettings(**{**fallback.model_dump(exclude_none=True), **mine})

    def __getstate__(self) -> dict[Any, Any]:
        # Pickled settings (multiprocessing, Jupyter) never carry the key: SecretStr
        # pickles its plain value.
        state = dict(super().__getstate__())
        state["__dict__"] = {**state["__dict__"], "api_key": None}
        return state


class Settings(BaseSettings):
    """All of rxllm's settings. Read them with :func:`settings` or :func:`load_settings`.

    Every top-level table but ``phases`` and ``capabilities`` is one provider's
    :class:`ProviderSettings`, under its registry name or an alias (``[anthropic]``,
    ``[xai]``, ``[ollama]``, a plugin's name). Read them with :meth:`provider`, which
    merges a vendor's name and aliases.
    """

    model_config = SettingsConfigDict(
        env_prefix="RXLLM_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        case_sensitive=False,
        extra="allow",
        frozen=True,
        pyproject_toml_table_header=("tool", "rxllm"),
    )

    __pydantic_extra__: dict[str, ProviderSettings] = Field(init=False)

    phases: dict[str, str] = Field(default_factory=dict)
    """Phase name → ``"provider:model"``; ``default`` serves phases not listed."""
    capabilities: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Phase name → capability name → system prompt: capabilities added to a phase
    (:mod:`rxllm.phases`), or a phase of your own with its capabilities."""

    def __init__(self, **values: Any) -> None:
        # A ValidationError quotes the offending input, which may be a key: it is neither
        # shown nor kept (raising outside the handler leaves no __context__ behind).
        problem = None
        try:
            super().__init__(**values)
        except ValidationError as error:
            problem = _describe(error)
        except SettingsError as error:
            problem = str(error)
        if problem is not None:
            raise ConfigurationError(f"invalid rxllm settings: {problem}")

    @field_validator("phases")
    @classmethod
    def _phase_models_are_model_strings(cls, phases: dict[str, str]) -> dict[str, str]:
        for phase, spec in phases.items():
            provider, sep, model = spec.partition(":")
            if not (sep and provider.strip() and model.strip()):
                # The value is not quoted: settings errors never echo what was set.
                raise ValueError(f"phase {phase!r} is not mapped to a 'provider:model' string")
        return phases

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = _config_file()
        with _naming_bad_toml(config_file):
            toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file)
        with _naming_bad_toml(Path("pyproject.toml")):
            pyproject = PyprojectTomlConfigSettingsSource(
                settings_cls, toml_file=Path("pyproject.toml")
            )
        return (
            init_settings,
            _RxllmEnvSource(settings_cls),
            toml,
            pyproject,
        )

    # -- reading ------------------------------------------------------------------------

    def provider(self, name: str, *aliases: str) -> ProviderSettings:
        """The settings of provider ``name``; tables under its ``aliases`` fill the gaps.

        Example:
            >>> settings().provider("grok", "xai").default_model
        """
        found = ProviderSettings()
        for key in (name, *aliases):
            table = self._table(key)
            if table is not None:
                found = found.merged(table)
        return found

    def phase_model(self, phase: str) -> str:
        """The ``"provider:model"`` string for ``phase``: its entry, else the ``default``
        entry, else the phase's documented default (:data:`PHASE_DEFAULT_MODELS`).

        Raises:
            ConfigurationError: a phase of your own that nothing maps.
        """
        spec = (
            self.phases.get(phase) or self.phases.get("default") or PHASE_DEFAULT_MODELS.get(phase)
        )
        if spec is None:
            known = ", ".join(sorted(self.phases)) or "none"
            raise ConfigurationError(
                f"no model for phase {phase!r} (mapped phases: {known}): set it in rxllm.toml "
                f'as [phases] {phase} = "provider:model", or RXLLM_PHASES__{phase.upper()}='
                "provider:model"
            )
        return spec

    def _table(self, key: str) -> ProviderSettings | None:
        extra = self.__pydantic_extra__ or {}
        return extra.get(key)


# -- the process's settings -------------------------------------------------------------

_installed: Settings | None = None
_config_override: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "rxllm_config_file", default=None
)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from the sources now; ``overrides`` take precedence over all of them.

    Args:
        path: a TOML file to read instead of ``RXLLM_CONFIG`` or ``./rxllm.toml``.
        overrides: explicit values, e.g. ``anthropic={"timeout": 30}``,
            ``phases={"plan": "anthropic:claude-opus-4-5"}``.

    Raises:
        ConfigurationError: a value is invalid, a TOML file does not parse, or
            the named file does not exist. The message never contains a key.
    """
    token = _config_override.set(_existing(Path(path), "path") if path is not None else None)
    try:
        loaded = Settings(**overrides)
    finally:
        _config_override.reset(token)
    logger.debug("rxllm settings loaded: %r", loaded)
    return loaded


def settings() -> Settings:
    """The settings in force: those installed with :func:`configure`, else read now."""
    return _in_force()


def _in_force() -> Settings:
    return _installed if _installed is not None else load_settings()


def configure(settings: Settings | None = None, /, **overrides: Any) -> Settings | None:
    """Install settings for the whole process (``rxllm.provider``, ``rxllm.model``, phases).

    ``configure(s)`` installs ``s``; ``configure(**overrides)`` reads the sources
    now with ``overrides`` on top and installs the result; ``configure(None)``
    with no overrides goes back to reading the sources on every use (and
    returns ``None``).

    Example:
        >>> rxllm.configure(phases={"plan": "anthropic:claude-opus-4-5"})
    """
    global _installed
    if settings is not None and overrides:
        raise TypeError("configure() takes settings or overrides, not both")
    if settings is None and not overrides:
        _installed = None
        return None
    _installed = settings if settings is not None else load_settings(**overrides)
    return _installed


@dataclass(frozen=True, slots=True)
class Credentials:
    """A vendor's API key and base URL, resolved (:func:`resolve_credentials`)."""

    api_key: SecretStr | None
    base_url: str | None
    key_source: str | None
    """Where the key came from: ``"api_key="``, the variable's name, ``"settings"``."""

    def __repr__(self) -> str:
        key = "**********" if self.api_key is not None else None
        return f"Credentials(api_key={key}, base_url={self.base_url!r}, from={self.key_source!r})"


def resolve_credentials(
    spec: ProviderSpec,
    *,
    api_key: str | SecretStr | None = None,
    base_url: str | None = None,
    settings: Settings | None = None,
) -> Credentials:
    """The one place an API key and a base URL are looked up, for vendor ``spec``.

    Each comes from the argument, else the vendor's own environment variables
    (``spec.key_env`` in order, ``spec.base_url_env``), else the settings
    (``RXLLM_<VENDOR>__API_KEY``, ``rxllm.toml``...). The base URL falls back to
    the spec's default (``None``: the SDK's, the real service). A missing key is
    not an error here (``api_key`` is ``None``): the provider says what to set.

    Raises:
        ConfigurationError: the key found cannot be sent as is (whitespace, a control
            or non-ASCII character); the message names where it came from, not the key.

    Example:
        >>> resolve_credentials(registry.spec("ollama")).base_url
        'http://localhost:11434/v1'
    """
    source: str | None = "api_key=" if api_key else None
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    configured: ProviderSettings | None = None
    if not key:
        variable = next((v for v in spec.key_env if os.environ.get(v)), None)
        if variable is not None:
            key, source = os.environ[variable], variable
    if not key or not base_url:
        configured = (settings or _in_force()).provider(spec.name, *spec.aliases)
    if not key and configured is not None and configured.api_key is not None:
        key, source = configured.api_key.get_secret_value(), "settings"
    if key:
        try:
            check_api_key(key, provider=f"{spec.name} (from {source})")
        except ValueError as error:
            raise ConfigurationError(str(error), provider=spec.name) from None
    if not base_url and spec.base_url_env:
        base_url = os.environ.get(spec.base_url_env) or None
    if not base_url and configured is not None:
        base_url = configured.base_url
    return Credentials(
        api_key=SecretStr(key) if key else None,
        base_url=base_url or spec.base_url,
        key_source=source if key else None,
    )


# -- sources ------------------------------------------------------------------------------


PHASE_DEFAULT_MODELS: Mapping[str, str] = MappingProxyType(
    {
        "plan": "gemini:gemini-2.5-pro",
        "creative": "openai:gpt-5",
        "implement": "anthropic:claude-sonnet-4-6",
        "qa": "openai:gpt-5-mini",
    }
)
"""The four work phases' models when the configuration maps none (the reasons are in
:mod:`rxllm.phases`)."""

_NOT_PROVIDER_TABLES = frozenset(("phases", "capabilities", "config"))
"""``RXLLM_PHASES__*`` is the phase map, ``RXLLM_CAPABILITIES__*`` the phases' capabilities,
``RXLLM_CONFIG`` a file: none is a provider."""


class _RxllmEnvSource(EnvSettingsSource):
    """``RXLLM_*`` variables: ``RXLLM_PHASES__PLAN``, and ``RXLLM_<PROVIDER>__<FIELD>`` for
    any provider (its tables are not declared fields, so they are read here by name).
    ``RXLLM_CONFIG`` names a file and is not a setting."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        values.pop("config", None)
        prefix = "rxllm_"
        for variable, value in os.environ.items():
            lower = variable.lower()
            if not lower.startswith(prefix) or not value:
                continue
            table, sep, key = lower[len(prefix) :].partition("__")
            if sep and table and key and table not in _NOT_PROVIDER_TABLES:
                values.setdefault(table, {})[key] = value
        return values


def _config_file() -> Path:
    explicit = _config_override.get()
    if explicit is not None:
        return explicit
    named = os.environ.get(CONFIG_ENV)
    if named:
        return _existing(Path(named), CONFIG_ENV)
    return Path(CONFIG_FILE)


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigurationError(f"{what} names {str(path)!r}, which is not a file")
    return path


@contextlib.contextmanager
def _naming_bad_toml(path: Path) -> Iterator[None]:
    try:
        yield
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path} is not valid TOML: {error}") from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "settings"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)

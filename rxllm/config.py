"""rxllm's settings: API keys, base URLs, defaults, limits and the phase → model map.

Settings are read, in order of precedence (the first that sets a value wins):

1. explicit arguments: ``rxllm.provider("openai", api_key=...)``,
   ``load_settings(anthropic={"timeout": 30})``, or settings installed with
   :func:`configure`;
2. environment variables: the vendors' own (``ANTHROPIC_API_KEY``,
   ``OPENAI_API_KEY``, ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``, ``XAI_API_KEY``,
   ``ANTHROPIC_BASE_URL``, ``OPENAI_BASE_URL``, ``GEMINI_BASE_URL``,
   ``XAI_BASE_URL``), then ``RXLLM_*`` for everything else, nested with ``__``:
   ``RXLLM_ANTHROPIC__TIMEOUT=30``, ``RXLLM_GROK__DEFAULT_MODEL=grok-4``,
   ``RXLLM_PHASES__PLAN=anthropic:claude-opus-4-5``;
3. ``rxllm.toml`` in the working directory, or the file named by ``RXLLM_CONFIG``
   (which must then exist);
4. ``[tool.rxllm]`` in ``pyproject.toml`` in the working directory.

Nothing is cached: each :func:`settings` call (and so each ``rxllm.provider``
or ``rxllm.model``) reads the sources afresh, unless :func:`configure` has
installed settings for the process.

The TOML shape (in ``pyproject.toml``, put the same tables under ``tool.rxllm``:
``[tool.rxllm.anthropic]``, ``[tool.rxllm.phases]``)::

    # rxllm.toml
    [anthropic]                      # one table per provider: anthropic, openai, gemini,
    default_model = "claude-opus-4-5"  # grok (or an alias: claude, google, xai), or a
    timeout = 60                     # third-party provider's registry name
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

Every provider table takes ``api_key``, ``base_url``, ``default_model``,
``timeout`` (seconds), ``requests_per_minute`` and ``tokens_per_minute``;
unknown keys are errors, so a typo does not pass silently.

API keys are :class:`pydantic.SecretStr`: they never appear in a ``repr``, a
``str``, a log line or an error message, and pickled settings leave them out
(an unpickled copy has no keys; it reads them from its environment again when
used through :func:`rxllm.provider`).

Example:
    >>> import rxllm
    >>> rxllm.config.settings().provider("anthropic").timeout
    >>> plan = rxllm.model_for_phase("plan")
    >>> await plan.generate("Outline a test plan for a JSON parser")
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
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

if TYPE_CHECKING:
    from .registry import BoundModel

__all__ = [
    "CONFIG_ENV",
    "PHASES",
    "Phase",
    "ProviderSettings",
    "Settings",
    "configure",
    "load_settings",
    "model_for_phase",
    "settings",
]

logger = logging.getLogger("rxllm.config")

Phase: TypeAlias = Literal["plan", "creative", "implement", "qa"]
PHASES: tuple[Phase, ...] = ("plan", "creative", "implement", "qa")
"""The flow's phases; ``[phases]`` may also name others, and a ``default``."""

CONFIG_ENV = "RXLLM_CONFIG"
"""Environment variable naming a TOML file to read instead of ``./rxllm.toml``."""

CONFIG_FILE = "rxllm.toml"

VENDOR_ENV: Mapping[str, tuple[tuple[str, ...], str]] = {
    "anthropic": (("ANTHROPIC_API_KEY",), "ANTHROPIC_BASE_URL"),
    "openai": (("OPENAI_API_KEY",), "OPENAI_BASE_URL"),
    "gemini": (("GEMINI_API_KEY", "GOOGLE_API_KEY"), "GEMINI_BASE_URL"),
    "grok": (("XAI_API_KEY",), "XAI_BASE_URL"),
}
"""The vendors' own environment variables: (API key variables in order of preference,
base URL variable), per built-in provider. They match the provider classes'
``api_key_env`` and ``base_url_env``."""


class ProviderSettings(BaseModel):
    """Settings for one provider; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    base_url: str | None = None
    default_model: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    """Seconds, passed to the SDK client."""
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

    The four built-in providers are fields; any other top-level table (an alias
    like ``[xai]``, or a third-party provider) is kept as extra
    :class:`ProviderSettings`. Use :meth:`provider` rather than the attributes.
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

    anthropic: ProviderSettings = ProviderSettings()
    openai: ProviderSettings = ProviderSettings()
    gemini: ProviderSettings = ProviderSettings()
    grok: ProviderSettings = ProviderSettings()
    phases: dict[str, str] = Field(default_factory=dict)
    """Phase name → ``"provider:model"``; ``default`` serves phases not listed."""

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
            _VendorEnvSource(settings_cls),
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
        """The ``"provider:model"`` string for ``phase`` (or the ``default`` entry).

        Raises:
            ConfigurationError: neither ``phase`` nor ``default`` is mapped.
        """
        spec = self.phases.get(phase) or self.phases.get("default")
        if spec is None:
            known = ", ".join(sorted(self.phases)) or "none"
            raise ConfigurationError(
                f"no model for phase {phase!r} (mapped phases: {known}): set it in rxllm.toml "
                f'as [phases] {phase} = "provider:model", or RXLLM_PHASES__{phase.upper()}='
                "provider:model"
            )
        return spec

    def _table(self, key: str) -> ProviderSettings | None:
        if key in type(self).model_fields and key != "phases":
            value = getattr(self, key)
            assert isinstance(value, ProviderSettings)
            return value
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


def model_for_phase(phase: Phase | str, **options: Any) -> BoundModel:
    """The model configured for ``phase`` (plan, creative, implement, qa, ...), bound.

    ``options`` go to :func:`rxllm.model` (``api_key=``, ``base_url=``,
    ``allow_unknown_model=``, ``settings=``...). Returns a
    :class:`~rxllm.registry.BoundModel`; its ``spec`` is the configured string.

    Raises:
        ConfigurationError: the phase is not mapped (the message says how to map
            it), or it maps to an unknown provider or model.

    Example:
        >>> async for event in rxllm.aiter(rxllm.model_for_phase("qa").stream("Review:")):
        ...     print(event)
    """
    from .registry import model

    current = options.get("settings") or settings()
    options["settings"] = current
    return model(current.phase_model(phase), **options)


# -- sources ------------------------------------------------------------------------------


class _VendorEnvSource(PydanticBaseSettingsSource):
    """The vendors' own variables (``ANTHROPIC_API_KEY``, ``XAI_BASE_URL``, ...)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for provider, (key_vars, url_var) in VENDOR_ENV.items():
            table: dict[str, str] = {}
            key = next((os.environ[v] for v in key_vars if os.environ.get(v)), None)
            if key:
                table["api_key"] = key
            if os.environ.get(url_var):
                table["base_url"] = os.environ[url_var]
            if table:
                found[provider] = table
        return found


class _RxllmEnvSource(EnvSettingsSource):
    """``RXLLM_*`` variables; ``RXLLM_CONFIG`` names a file and is not a setting."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        values.pop("config", None)
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

"""The provider registry: names → provider classes, ``"provider:model"`` strings.

Three kinds of provider are registered:

- rxllm's own four, by ``"module:Class"`` string, imported on first use so that
  ``import rxllm`` imports no SDK: ``anthropic`` (alias ``claude``), ``openai``,
  ``gemini`` (alias ``google``) and ``grok`` (alias ``xai``);
- third-party providers from installed packages, through the entry-point group
  ``rxllm.providers`` (the entry point's name is the provider's name, its value
  a :class:`~rxllm.provider.Provider` subclass)::

      # the plugin's pyproject.toml
      [project.entry-points."rxllm.providers"]
      acme = "acme_rxllm:AcmeProvider"

- classes registered in code with :func:`register` (which wins over both).

Everything here fails before any network call: an unknown provider, a
malformed model string or a model the catalog does not know raises
:class:`~rxllm.errors.ConfigurationError` with the names that would work.

Example:
    >>> claude = rxllm.model("anthropic:claude-sonnet-4-6", timeout=30)
    >>> await claude.generate("Say hi", max_tokens=20)
    >>> rxllm.providers()
    ['anthropic', 'openai', 'gemini', 'grok']
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from . import catalog
from .errors import ConfigurationError
from .provider import Provider, first_env
from .request import StreamRequest
from .result import StreamResult
from .stream import LLMStream

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "ENTRY_POINT_GROUP",
    "BoundModel",
    "canonical_name",
    "model",
    "parse_model_spec",
    "provider",
    "provider_class",
    "providers",
    "register",
]

ENTRY_POINT_GROUP = "rxllm.providers"

_ProviderClass = type[Provider[Any]]


@dataclass
class _Entry:
    """One registered provider: its class, or where to import it from."""

    name: str
    target: str | _ProviderClass
    """``"module:Class"`` until loaded."""
    aliases: tuple[str, ...] = ()
    origin: str = "rxllm"


_BUILTINS: tuple[_Entry, ...] = (
    _Entry("anthropic", "rxllm.providers.anthropic:AnthropicProvider", ("claude",)),
    _Entry("openai", "rxllm.providers.openai:OpenAIProvider"),
    _Entry("gemini", "rxllm.providers.gemini:GeminiProvider", ("google",)),
    _Entry("grok", "rxllm.providers.grok:GrokProvider", ("xai",)),
)


@dataclass
class _Registry:
    builtins: dict[str, _Entry] = field(default_factory=dict)
    registered: dict[str, _Entry] = field(default_factory=dict)
    """By :func:`register`; these win over built-ins and plugins."""
    plugins: dict[str, _Entry] = field(default_factory=dict)
    """Entry points found by the last scan, by name."""
    scanned: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)

    def entries(self, *, rescan: bool = True) -> dict[str, _Entry]:
        """Every provider by name, in precedence order: code, built-ins, plugins.

        Scanning the installed packages' entry points takes milliseconds, so
        lookups use the last scan and rescan only when a name is not found.
        """
        found: dict[str, _Entry] = {}
        for entry in self._plugin_entries(rescan=rescan):
            found[entry.name] = entry
        with self.lock:
            for source in (self.builtins, self.registered):
                found.update(source)
        return found

    def find(self, key: str) -> _Entry | None:
        """The entry whose name, else alias, is ``key``: code, built-ins, then plugins."""
        for rescan in (False, True):
            entries = self.entries(rescan=rescan)
            if key in entries:
                return entries[key]
            for entry in entries.values():
                if key in _aliases(entry):
                    return entry
        return None

    def _plugin_entries(self, *, rescan: bool) -> list[_Entry]:
        with self.lock:
            if rescan or not self.scanned:
                found: dict[str, _Entry] = {}
                for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
                    dist = point.dist.name if point.dist is not None else "an installed package"
                    origin = f"entry point {point.name!r} of {dist}"
                    known = self.plugins.get(point.name)
                    if known is None or known.origin != origin:
                        known = _Entry(point.name, point.value, origin=origin)
                    found[point.name] = known
                self.plugins = found
                self.scanned = True
            return list(self.plugins.values())


_registry = _Registry(builtins={entry.name: entry for entry in _BUILTINS})


# -- the registry -----------------------------------------------------------------------


def providers() -> list[str]:
    """The names of every registered provider: rxllm's own first, then the others sorted.

    Aliases (``claude``, ``google``, ``xai``) are accepted everywhere but not listed.
    """
    names = list(_registry.entries())
    builtin = [e.name for e in _BUILTINS if e.name in names]
    return builtin + sorted(n for n in names if n not in builtin)


def register(cls: _ProviderClass, *, replace: bool = False) -> _ProviderClass:
    """Register a :class:`~rxllm.provider.Provider` subclass under its ``name`` and ``aliases``.

    Usable as a class decorator. Registering a different class under a name
    that is already taken (rxllm's own included) needs ``replace=True``.

    Raises:
        ConfigurationError: ``cls`` is not a Provider subclass with a ``name``, or
            the name is taken and ``replace`` is false.

    Example:
        >>> @rxllm.register
        ... class EchoProvider(Provider[None]):
        ...     name = "echo"
        ...     ...
    """
    _check_provider_class(cls, origin=f"register({getattr(cls, '__name__', cls)!r})")
    with _registry.lock:
        if not replace:
            taken = _registry.find(cls.name)
            if taken is not None and taken.target is not cls:
                raise ConfigurationError(
                    f"a provider named {cls.name!r} is already registered ({taken.origin}): "
                    "pass replace=True to replace it"
                )
        _registry.registered[cls.name] = _Entry(
            cls.name, cls, tuple(cls.aliases), origin=f"registered {cls.__qualname__}"
        )
    return cls


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases (``"xai"`` → ``"grok"``).

    Raises:
        ConfigurationError: no provider has that name; the message lists the known ones.
    """
    key = name.strip().lower()
    entry = _registry.find(key)
    if entry is None:
        raise ConfigurationError(
            f"unknown provider {name!r}: {_known_providers(_registry.entries().values())}"
        )
    return entry.name


def provider_class(name: str) -> _ProviderClass:
    """The Provider subclass registered as ``name`` (or an alias), imported if need be.

    Raises:
        ConfigurationError: unknown name, or the provider's module cannot be imported.
    """
    canonical = canonical_name(name)
    return _load(_registry.entries(rescan=False)[canonical])


def parse_model_spec(spec: str) -> tuple[str, str]:
    """Split ``"provider:model"`` into its two parts (the model may itself contain ``:``).

    Raises:
        ConfigurationError: no colon, or an empty part; the message lists the providers.
    """
    provider_part, sep, model_part = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    provider_part, model_part = provider_part.strip(), model_part.strip()
    if not (sep and provider_part and model_part):
        raise ConfigurationError(
            f"{spec!r} is not a model string: write 'provider:model', e.g. "
            f"'anthropic:claude-sonnet-4-6'; {_known_providers(_registry.entries().values())}"
        )
    return provider_part, model_part


# -- building providers and models -------------------------------------------------------


def provider(
    name: str,
    *,
    api_key: str | SecretStr | None = None,
    base_url: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Provider[Any]:
    """Build the provider ``name`` (or an alias); configuration fills what is not passed.

    The API key and base URL come from the arguments, else the provider's own
    environment variables, else rxllm's settings (``RXLLM_*``, ``rxllm.toml``,
    ``[tool.rxllm]``); ``timeout`` and ``default_model`` likewise from the
    arguments, else the settings. Other ``options`` go to the provider class.

    Each call builds a new provider; keep and share it (it owns the SDK client).

    Raises:
        ConfigurationError: unknown provider, or no API key (the message names
            the environment variable to set, never a key).

    Example:
        >>> openai = rxllm.provider("openai", base_url="http://127.0.0.1:8000/v1")
    """
    from . import config

    cls = provider_class(name)
    configured = (settings or config.settings()).provider(cls.name, *cls.aliases)
    if api_key is None:
        env_key = first_env(getattr(cls, "api_key_env", ()))
        secret = configured.api_key.get_secret_value() if configured.api_key else None
        api_key = env_key or secret
    if base_url is None:
        env_url = os.environ.get(cls.base_url_env) if cls.base_url_env else None
        base_url = env_url or configured.base_url
    if options.get("timeout") is None and configured.timeout is not None:
        options["timeout"] = configured.timeout
    default_model = options.pop("default_model", None) or configured.default_model
    return cls(api_key=api_key, base_url=base_url, default_model=default_model, **options)


def model(
    spec: str,
    *,
    allow_unknown_model: bool = False,
    settings: Settings | None = None,
    **options: Any,
) -> BoundModel:
    """A model bound to its provider, from a ``"provider:model"`` string.

    ``options`` go to :func:`provider` (``api_key=``, ``base_url=``, ``timeout=``, ...).
    Checked before anything is built: the provider must be registered and, when
    the catalog knows the provider, the model must be in it (snapshot ids and
    emulator knobs after ``~`` allowed) unless ``allow_unknown_model=True``.

    Raises:
        ConfigurationError: malformed string, unknown provider (lists the known
            ones), unknown model (lists the provider's), or no API key.

    Example:
        >>> gpt = rxllm.model("openai:gpt-5-mini")
        >>> gpt.stream("Hello", max_tokens=50).subscribe(print)
    """
    provider_name, model_id = parse_model_spec(spec)
    name = canonical_name(provider_name)
    if not allow_unknown_model:
        _check_model(name, model_id)
    return BoundModel(provider(name, settings=settings, **options), model_id)


@dataclass(frozen=True, slots=True)
class BoundModel:
    """One model of one provider: what ``rxllm.model("provider:model")`` returns.

    ``stream``, ``complete`` and ``generate`` take a prompt or a
    :class:`~rxllm.request.StreamRequest` plus request fields, like the
    provider's own methods, with ``model`` set to this model.
    """

    provider: Provider[Any]
    name: str
    """The model id, e.g. ``"claude-sonnet-4-6"``."""

    @property
    def spec(self) -> str:
        """``"provider:model"``."""
        return f"{self.provider.name}:{self.name}"

    def request(self, request: StreamRequest | str, **fields: Any) -> StreamRequest:
        """The request this model would send for ``request`` and ``fields``."""
        fields.setdefault("model", self.name)
        return self.provider.request(request, **fields)

    def stream(self, request: StreamRequest | str, **fields: Any) -> LLMStream:
        """A cold ``Observable[StreamEvent]``: nothing is sent until it is subscribed."""
        return LLMStream(self.provider, self.request(request, **fields))

    async def complete(self, request: StreamRequest | str, **fields: Any) -> StreamResult:
        """Stream to the end: text, reasoning, usage and finish reason."""
        return await self.provider.complete(self.request(request, **fields))

    async def generate(self, request: StreamRequest | str, **fields: Any) -> str:
        """The whole reply text."""
        return (await self.complete(request, **fields)).text

    def info(self) -> catalog.ModelInfo | None:
        """What the catalog knows about this model (limits, prices), if anything."""
        return catalog.info(self.provider.name, self.name)

    def __repr__(self) -> str:
        return f"BoundModel({self.spec!r})"


# -- internals ---------------------------------------------------------------------------


def _check_model(provider_name: str, model_id: str) -> None:
    known = catalog.models(provider_name)
    if known and catalog.info(provider_name, model_id) is None:
        raise ConfigurationError(
            f"unknown model {catalog.base_model_id(model_id)!r} for {provider_name}: "
            f"known models are {', '.join(known)}; pass allow_unknown_model=True to use it "
            "anyway",
            provider=provider_name,
            model=model_id,
        )


def _load(entry: _Entry) -> _ProviderClass:
    if not isinstance(entry.target, str):
        return entry.target
    try:
        loaded = metadata.EntryPoint(entry.name, entry.target, ENTRY_POINT_GROUP).load()
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigurationError(
            f"provider {entry.name!r} ({entry.origin}) cannot be loaded from "
            f"{entry.target!r}: {error}"
        ) from error
    _check_provider_class(loaded, origin=entry.origin, expected_name=entry.name)
    with _registry.lock:
        entry.target = loaded
        entry.aliases = tuple(loaded.aliases)
    return loaded  # type: ignore[no-any-return]


def _check_provider_class(cls: object, *, origin: str, expected_name: str | None = None) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigurationError(f"{origin}: {cls!r} is not a rxllm Provider subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{origin}: {cls.__qualname__} has no 'name'")
    if expected_name is not None and name != expected_name:
        raise ConfigurationError(
            f"{origin}: {cls.__qualname__}.name is {name!r}, but it is registered as "
            f"{expected_name!r}"
        )


def _aliases(entry: _Entry) -> tuple[str, ...]:
    # A plugin's aliases are on its class: import it only when a name was not found.
    if isinstance(entry.target, str) and entry.origin.startswith("entry point"):
        try:
            _load(entry)
        except ConfigurationError:
            return ()
    return entry.aliases


def _known_providers(entries: Iterable[_Entry]) -> str:
    described = []
    for entry in sorted(entries, key=lambda e: e.name):
        aliases = f" ({', '.join(entry.aliases)})" if entry.aliases else ""
        described.append(entry.name + aliases)
    return "known providers are " + ", ".join(described)

"""The provider registry: names → vendor specs and their mappers, ``"provider:model"`` strings.

Every vendor is a :class:`~rxllm.vendors.ProviderSpec`. Three kinds are registered:

- rxllm's own (:data:`rxllm.vendors.BUILTIN_SPECS`): ``anthropic`` (alias
  ``claude``), ``openai``, ``gemini`` (alias ``google``), ``grok`` (alias ``xai``)
  and the OpenAI-compatible presets (``openai-compatible``, ``openrouter``,
  ``deepseek``, ``mistral``, ``groq``, ``together``, ``ollama``, ``vllm``,
  ``llama-cpp``, ``lmstudio``); their mappers are imported on first use, so
  ``import rxllm`` imports no SDK;
- third-party vendors from installed packages, through the entry-point group
  ``rxllm.providers`` (the entry point's name is the vendor's name; its value a
  ``ProviderSpec`` or a :class:`~rxllm.provider.Provider` subclass)::

      # the plugin's pyproject.toml
      [project.entry-points."rxllm.providers"]
      acme = "acme_rxllm:ACME_SPEC"

- specs or classes registered in code with :func:`register` (which win over both).

Everything here fails before any network call: an unknown provider, a
malformed model string or a model the catalog does not know raises
:class:`~rxllm.errors.ConfigurationError` with the names that would work.

Example:
    >>> claude = rxllm.model("anthropic:claude-sonnet-4-6", timeout=30)
    >>> await claude.generate("Say hi", max_tokens=20)
    >>> rxllm.provider_names()[:4]
    ['anthropic', 'openai', 'gemini', 'grok']
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from pydantic import SecretStr

from . import catalog, config
from .config import Settings
from .errors import ConfigurationError
from .operators import RateLimiter
from .provider import Provider, StreamOperator
from .request import StreamRequest
from .result import StreamResult
from .stream import LLMStream
from .vendors import BUILTIN_SPECS, ProviderSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "BoundModel",
    "canonical_name",
    "model",
    "model_for_phase",
    "parse_model_spec",
    "provider",
    "provider_class",
    "provider_names",
    "register",
    "spec",
    "specs",
]

ENTRY_POINT_GROUP = "rxllm.providers"

logger = logging.getLogger("rxllm.registry")

_ProviderClass = type[Provider[Any]]


@dataclass
class _Entry:
    """One registered vendor: its spec, or where an entry point says to import it from."""

    name: str
    target: str | ProviderSpec
    """``"module:attribute"`` of an entry point until loaded."""
    origin: str = "rxllm"

    @property
    def aliases(self) -> tuple[str, ...]:
        return self.target.aliases if isinstance(self.target, ProviderSpec) else ()


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
        """Every vendor by name, in precedence order: code, built-ins, plugins.

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


_registry = _Registry(builtins={spec.name: _Entry(spec.name, spec) for spec in BUILTIN_SPECS})
catalog.add_models(model for spec in BUILTIN_SPECS for model in spec.models)


# -- the registry -----------------------------------------------------------------------


def provider_names() -> list[str]:
    """The names of every registered vendor: rxllm's own first, then the others sorted.

    Aliases (``claude``, ``google``, ``xai``) are accepted everywhere but not listed.
    """
    names = list(_registry.entries())
    builtin = [s.name for s in BUILTIN_SPECS if s.name in names]
    return builtin + sorted(n for n in names if n not in builtin)


def specs() -> list[ProviderSpec]:
    """The spec of every registered vendor, in :func:`provider_names` order.

    A plugin whose entry point cannot be loaded is left out (using it by name
    raises the reason).
    """
    found = []
    for name in provider_names():
        try:
            found.append(spec(name))
        except ConfigurationError:
            continue
    return found


def register(
    target: ProviderSpec | _ProviderClass, *, replace: bool = False
) -> ProviderSpec | _ProviderClass:
    """Register a vendor: a :class:`~rxllm.vendors.ProviderSpec`, or a Provider subclass
    (its ``spec``, or its ``name``, ``aliases``, ``api_key_env``... class attributes).

    Usable as a class decorator. Registering a different vendor under a name that
    is already taken (rxllm's own included) needs ``replace=True``. Returns ``target``.

    Raises:
        ConfigurationError: not a spec or a Provider subclass with a name, or the
            name is taken and ``replace`` is false.

    Example:
        >>> rxllm.register(ProviderSpec(name="acme", mapper=OPENAI_MAPPER,
        ...     key_env=("ACME_API_KEY",), base_url="https://api.acme.test/v1"))
    """
    origin = f"register({getattr(target, '__name__', None) or getattr(target, 'name', target)!r})"
    spec_ = _as_spec(target, origin=origin)
    with _registry.lock:
        if not replace:
            taken = _registry.find(spec_.name)
            if taken is not None and taken.target != spec_:
                raise ConfigurationError(
                    f"a provider named {spec_.name!r} is already registered ({taken.origin}): "
                    "pass replace=True to replace it"
                )
        _registry.registered[spec_.name] = _Entry(spec_.name, spec_, origin=origin)
    catalog.add_models(spec_.models)
    return target


def spec(name: str) -> ProviderSpec:
    """The spec of vendor ``name`` (or an alias); a plugin's is loaded if need be.

    Raises:
        ConfigurationError: unknown name (the message lists the known ones), or a
            plugin that cannot be loaded.
    """
    return _load(_find(name))


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases (``"xai"`` → ``"grok"``).

    Raises:
        ConfigurationError: no provider has that name; the message lists the known ones.
    """
    return _find(name).name


def provider_class(name: str) -> _ProviderClass:
    """The Provider subclass (the mapper) of vendor ``name``, imported if need be.

    Raises:
        ConfigurationError: unknown name, or the mapper's module cannot be imported.
    """
    found = spec(name)
    return _mapper(found, origin=_registry.entries(rescan=False)[found.name].origin)


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

    The API key and base URL are resolved by
    :func:`rxllm.config.resolve_credentials` (the arguments, else the vendor's own
    environment variables, else rxllm's settings: ``RXLLM_*``, ``rxllm.toml``,
    ``[tool.rxllm]``); ``timeout``, ``default_model`` and ``max_tokens`` (the
    default for requests that set none) likewise from the arguments, else the
    settings. Other ``options`` go to the mapper class.

    Each call builds a new provider; keep and share it (it owns the SDK client).

    Raises:
        ConfigurationError: unknown provider, or no API key (the message names
            the environment variable to set, never a key).

    Example:
        >>> openai = rxllm.provider("openai", base_url="http://127.0.0.1:8000/v1")
        >>> local = rxllm.provider("ollama")  # http://localhost:11434/v1, no key
    """
    vendor = spec(name)
    cls = provider_class(vendor.name)
    current = settings or config.settings()
    credentials = config.resolve_credentials(
        vendor, api_key=api_key, base_url=base_url, settings=current
    )
    return _build(cls, vendor, credentials, current, options)


def _build(
    cls: _ProviderClass,
    vendor: ProviderSpec,
    credentials: config.Credentials,
    settings: Settings,
    options: dict[str, Any],
) -> Provider[Any]:
    configured = settings.provider(vendor.name, *vendor.aliases)
    if options.get("timeout") is None and configured.timeout is not None:
        options["timeout"] = configured.timeout
    if options.get("max_connections") is None and configured.max_connections is not None:
        options["max_connections"] = configured.max_connections
    default_model = options.pop("default_model", None) or configured.default_model
    default_max_tokens = options.pop("default_max_tokens", None) or configured.max_tokens
    built = cls(
        spec=vendor,
        api_key=credentials.api_key,
        base_url=credentials.base_url,
        default_model=default_model,
        default_max_tokens=default_max_tokens,
        **options,
    )
    rpm, tpm = configured.requests_per_minute, configured.tokens_per_minute
    if rpm is not None or tpm is not None:  # one budget per provider object, for every stream
        built.limiter = RateLimiter(requests_per_minute=rpm, tokens_per_minute=tpm)
    return built


def model(
    spec: str,
    *,
    allow_unknown_model: bool = False,
    settings: Settings | None = None,
    api_key: str | SecretStr | None = None,
    base_url: str | None = None,
    **options: Any,
) -> BoundModel:
    """A model bound to its provider, from a ``"provider:model"`` string.

    ``options`` go to :func:`provider` (``timeout=``, ...). Checked before
    anything is built: the provider must be registered and, when the catalog
    knows the provider's models, the model must be one of them (snapshot ids
    and emulator knobs after ``~`` allowed). A custom ``base_url`` (a local or
    compatible server) accepts any model name, as does ``allow_unknown_model=True``;
    a model without a price is logged once, and its cost is ``None``.

    Raises:
        ConfigurationError: malformed string, unknown provider (lists the known
            ones), unknown model (lists the provider's), or no API key.

    Example:
        >>> gpt = rxllm.model("openai:gpt-5-mini")
        >>> gpt.stream("Hello", max_tokens=50).subscribe(print)
        >>> llama = rxllm.model("openai:llama3.2", base_url="http://localhost:11434/v1")
    """
    provider_part, model_id = parse_model_spec(spec)
    vendor = _load(_find(provider_part))
    cls = provider_class(vendor.name)
    current = settings or config.settings()
    credentials = config.resolve_credentials(
        vendor, api_key=api_key, base_url=base_url, settings=current
    )
    custom_address = credentials.base_url not in (None, vendor.base_url)
    if not (allow_unknown_model or custom_address):
        _check_model(vendor.name, model_id)
    if catalog.info(vendor.name, model_id) is None:
        _note_unpriced(vendor.name, model_id)
    return BoundModel(_build(cls, vendor, credentials, current, options), model_id)


def model_for_phase(phase: str, **options: Any) -> BoundModel:
    """The model configured for ``phase`` (plan, creative, implement, qa, ...), bound.

    ``options`` go to :func:`model` (``api_key=``, ``base_url=``,
    ``allow_unknown_model=``, ``settings=``...). Its ``spec`` is the configured string.

    Raises:
        ConfigurationError: the phase is not mapped (the message says how to map
            it), or it maps to an unknown provider or model.

    Example:
        >>> async for event in rxllm.aiter(rxllm.model_for_phase("qa").stream("Review:")):
        ...     print(event)
    """
    current = options.get("settings") or config.settings()
    options["settings"] = current
    return model(current.phase_model(phase), **options)


@dataclass(frozen=True, slots=True)
class BoundModel:
    """One model of one provider: what ``rxllm.model("provider:model")`` returns.

    ``stream``, ``complete``, ``generate`` and ``generate_sync`` take a prompt
    or a :class:`~rxllm.request.StreamRequest` plus request fields (or the
    fields alone: ``stream(messages=[...])``), like the provider's own methods,
    with ``model`` set to this model; the provider's limiter and usage tracker
    apply.

    Example:
        >>> gpt = rxllm.model("openai:gpt-5-mini")
        >>> gpt.generate_sync("Hi", timeout=30, operators=[take_tokens(100)])
    """

    provider: Provider[Any]
    name: str
    """The model id, e.g. ``"claude-sonnet-4-6"``."""

    @property
    def spec(self) -> str:
        """``"provider:model"``."""
        return f"{self.provider.name}:{self.name}"

    def request(self, request: StreamRequest | str | None = None, **fields: Any) -> StreamRequest:
        """The request this model would send for ``request`` and ``fields``."""
        fields.setdefault("model", self.name)
        return self.provider.request(request, **fields)

    def stream(self, request: StreamRequest | str | None = None, **fields: Any) -> LLMStream:
        """A cold ``Observable[StreamEvent]``: nothing is sent until it is subscribed."""
        return self.provider.stream(self.request(request, **fields))

    async def complete(
        self,
        request: StreamRequest | str | None = None,
        *,
        operators: Sequence[StreamOperator] = (),
        timeout: float | None = None,  # noqa: ASYNC109 - the timeout(total=) operator
        **fields: Any,
    ) -> StreamResult:
        """Stream to the end: text, reasoning, usage and finish reason.

        ``operators`` are piped onto the stream in order; ``timeout`` is a deadline
        in seconds for the whole call (see :meth:`Provider.complete`).
        """
        return await self.provider.complete(
            self.request(request, **fields), operators=operators, timeout=timeout
        )

    async def generate(
        self,
        request: StreamRequest | str | None = None,
        *,
        operators: Sequence[StreamOperator] = (),
        timeout: float | None = None,  # noqa: ASYNC109 - the timeout(total=) operator
        **fields: Any,
    ) -> str:
        """The whole reply text; arguments as :meth:`complete`.

        Example:
            >>> await claude.generate("Hi", timeout=30)  # TimeoutError after 30 s in all
        """
        return await self.provider.generate(
            self.request(request, **fields), operators=operators, timeout=timeout
        )

    def generate_sync(
        self,
        request: StreamRequest | str | None = None,
        *,
        operators: Sequence[StreamOperator] = (),
        timeout: float | None = None,
        **fields: Any,
    ) -> str:
        """Blocking :meth:`generate`, for scripts (like :func:`rxllm.collect_sync`)."""
        return self.provider.generate_sync(
            self.request(request, **fields), operators=operators, timeout=timeout
        )

    def info(self) -> catalog.ModelInfo | None:
        """What the catalog knows about this model (limits, prices), if anything."""
        return catalog.info(self.provider.name, self.name)

    def __repr__(self) -> str:
        return f"BoundModel({self.spec!r})"


# -- internals ---------------------------------------------------------------------------

_unpriced: set[tuple[str, str]] = set()


def _note_unpriced(provider_name: str, model_id: str) -> None:
    key = (provider_name, catalog.base_model_id(model_id))
    if key not in _unpriced:
        _unpriced.add(key)
        logger.warning("%s:%s has no price in rxllm's catalog: its cost will be None", *key)


def _check_model(provider_name: str, model_id: str) -> None:
    known = catalog.models(provider_name)
    if known and catalog.info(provider_name, model_id) is None:
        raise ConfigurationError(
            f"unknown model {catalog.base_model_id(model_id)!r} for {provider_name}: "
            f"known models are {', '.join(known)}; pass allow_unknown_model=True (or a "
            "base_url of your own) to use it anyway",
            provider=provider_name,
            model=model_id,
        )


def _find(name: str) -> _Entry:
    entry = _registry.find(name.strip().lower()) if isinstance(name, str) else None
    if entry is None:
        raise ConfigurationError(
            f"unknown provider {name!r}: {_known_providers(_registry.entries().values())}"
        )
    return entry


def _load(entry: _Entry) -> ProviderSpec:
    """The entry's spec, importing a plugin's entry point the first time."""
    if isinstance(entry.target, ProviderSpec):
        return entry.target
    loaded = _import(entry.name, entry.target, origin=entry.origin)
    found = _as_spec(loaded, origin=entry.origin)
    if found.name != entry.name:
        raise ConfigurationError(
            f"{entry.origin}: {getattr(loaded, '__qualname__', loaded)!r} names itself "
            f"{found.name!r}, but it is registered as {entry.name!r}"
        )
    with _registry.lock:
        entry.target = found
    catalog.add_models(found.models)
    return found


def _import(name: str, target: str, *, origin: str) -> Any:
    """What ``"module:attribute"`` names, imported (an entry point's value, a mapper)."""
    try:
        return metadata.EntryPoint(name, target, ENTRY_POINT_GROUP).load()
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigurationError(
            f"provider {name!r} ({origin}) cannot be loaded from {target!r}: {error}"
        ) from error


def _as_spec(target: object, *, origin: str) -> ProviderSpec:
    """A spec, from a spec or from a Provider subclass (which becomes its mapper)."""
    if isinstance(target, ProviderSpec):
        if not target.name:
            raise ConfigurationError(f"{origin}: the spec has no name")
        return target
    if not (isinstance(target, type) and issubclass(target, Provider)):
        raise ConfigurationError(
            f"{origin}: {target!r} is neither a ProviderSpec nor a rxllm Provider subclass"
        )
    declared = getattr(target, "spec", None)
    if not isinstance(declared, ProviderSpec) or not declared.name:
        raise ConfigurationError(f"{origin}: {target.__qualname__} has no 'spec' and no 'name'")
    return dataclasses.replace(declared, mapper=target)


def _mapper(vendor: ProviderSpec, *, origin: str) -> _ProviderClass:
    cls = vendor.mapper
    if isinstance(cls, str):
        cls = _import(vendor.name, cls, origin=origin)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigurationError(f"{origin}: {cls!r} is not a rxllm Provider subclass")
    return cls


def _aliases(entry: _Entry) -> tuple[str, ...]:
    # A plugin's aliases are in its spec: import it only when a name was not found.
    if isinstance(entry.target, str):
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

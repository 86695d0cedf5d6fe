"""Bind models to the real service where an API key exists, else to rxllm's local emulator.

The ``rxllm`` command line and the notebooks use this so that they run on a
fresh machine with no key at all, and use the real services as soon as keys
are set. It always says which: one notice per provider ("anthropic: no
ANTHROPIC_API_KEY set, using the local emulator at http://127.0.0.1:…").

Three forms, for the places it is used:

- ``async with connect(*specs) as models:`` (async scripts, the command line):
  the emulator, if one is needed, is started for the block and stopped after
  it, and every provider is closed.
- ``with connect(*specs) as models:`` (plain scripts): the same, run on rxllm's
  background loop, so the blocking helpers (``rxllm.collect_sync``,
  ``rxllm.iterate``) work on the models inside the block. On a thread that runs
  an event loop it raises at once (use one of the async forms there).
- ``models = await connect(*specs)`` (Jupyter, any long-lived loop): the
  models stay bound; providers without a key share one emulator per event
  loop, started the first time it is needed and kept running for the loop.

Everything (model strings, the catalog, the real services' models too) is
checked before an emulator starts, and a failure after it started stops it
and closes the providers built so far.

Example:
    >>> claude, gpt = await connect("anthropic:claude-haiku-4-5", "openai:gpt-5-mini")
    anthropic: no ANTHROPIC_API_KEY set, using the local emulator at http://127.0.0.1:…
    openai: no OPENAI_API_KEY set, using the local emulator at http://127.0.0.1:…
    >>> await claude.generate("Hi", max_tokens=20)
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import config, registry
from .bridge import background_loop, refuse_blocking_on_loop_thread
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .emulator import Emulator
    from .provider import Provider

__all__ = ["Connection", "Route", "connect", "stop_shared_emulator"]

_R = TypeVar("_R")

_EMULATOR_KEY = "emulator-key"
"""What rxllm presents to an emulator it started itself (which accepts any key)."""

_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Emulator]] = (
    weakref.WeakKeyDictionary()
)
"""The emulator shared by ``await connect(...)`` on each event loop."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where one provider's requests go, and why."""

    provider: str
    emulated: bool
    base_url: str | None
    """``None``: the provider SDK's default (the real service)."""
    reason: str
    """Why: ``"no ANTHROPIC_API_KEY set"``, ``"asked to emulate"``, ``"API key found"``,
    ``"no key needed"`` (a local server)."""

    def describe(self) -> str:
        """The one-line notice: ``"grok: no XAI_API_KEY set, using the local emulator at …"``."""
        if self.emulated:
            return f"{self.provider}: {self.reason}, using the local emulator at {self.base_url}"
        where = self.base_url or "the real service"
        return f"{self.provider}: {self.reason}, using {where}"


class Connection(Sequence[registry.BoundModel]):
    """The bound models, in the order asked for, and where each provider's requests go.

    A sequence (``claude, gpt = connection``) that can also be indexed by
    ``"provider:model"`` or by provider name. ``aclose()`` closes the providers
    (and the emulator, when this connection started its own).
    """

    def __init__(
        self,
        models: list[registry.BoundModel],
        routes: dict[str, Route],
        emulator: Emulator | None,
        *,
        owns_emulator: bool,
    ) -> None:
        self.models = models
        self.routes = routes
        self.emulator = emulator
        self._owns_emulator = owns_emulator
        self._closed = False

    @property
    def emulated(self) -> list[str]:
        """The providers served by the emulator."""
        return [name for name, route in self.routes.items() if route.emulated]

    @overload
    def __getitem__(self, index: int) -> registry.BoundModel: ...
    @overload
    def __getitem__(self, index: str) -> registry.BoundModel: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[registry.BoundModel]: ...
    def __getitem__(self, index: int | slice | str) -> Any:
        if isinstance(index, str):
            for bound in self.models:
                if index in (bound.spec, bound.provider.name):
                    return bound
            raise KeyError(index)
        return self.models[index]

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self) -> Iterator[registry.BoundModel]:
        return iter(self.models)

    def __repr__(self) -> str:
        specs = ", ".join(
            f"{m.spec} ({'emulated' if self.routes[m.provider.name].emulated else 'real'})"
            for m in self.models
        )
        return f"<Connection {specs}>"

    async def aclose(self) -> None:
        """Close every provider (its connection pool), then the emulator if this one owns it."""
        if self._closed:
            return
        self._closed = True
        for provider in {id(m.provider): m.provider for m in self.models}.values():
            await provider.aclose()
        if self._owns_emulator and self.emulator is not None:
            await self.emulator.stop()


class _Connecting:
    """What :func:`connect` returns: awaitable (stays open), and a context manager (async or
    blocking) that closes what it opened."""

    def __init__(
        self,
        specs: Sequence[str],
        emulate: bool,
        notice: Callable[[str], None] | None,
        options: dict[str, Any],
        emulator_options: dict[str, Any],
    ) -> None:
        self._emulator_options = emulator_options
        self._specs = specs
        self._emulate = emulate
        self._notice = notice
        self._options = options
        self._connection: Connection | None = None

    def __await__(self) -> Generator[Any, None, Connection]:
        return _bind(
            self._specs,
            self._emulate,
            self._notice,
            self._options,
            self._emulator_options,
            shared=True,
        ).__await__()

    async def __aenter__(self) -> Connection:
        self._connection = await _bind(
            self._specs,
            self._emulate,
            self._notice,
            self._options,
            self._emulator_options,
            shared=False,
        )
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.aclose()

    def __enter__(self) -> Connection:
        refuse_blocking_on_loop_thread(
            "`with rxllm.connect(...)`",
            "`async with rxllm.connect(...)` or `await rxllm.connect(...)`",
        )
        # The emulator and the providers live on rxllm's background loop, where
        # collect_sync and iterate run the streams: that loop never waits on this thread.
        binding = _bind(
            self._specs,
            self._emulate,
            self._notice,
            self._options,
            self._emulator_options,
            shared=False,
        )
        self._connection = _wait_on_background_loop(binding)
        return self._connection

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            _wait_on_background_loop(self._connection.aclose())


def _wait_on_background_loop(coroutine: Coroutine[Any, Any, _R]) -> _R:
    """Run ``coroutine`` on rxllm's background loop and wait for it in this thread."""
    future = asyncio.run_coroutine_threadsafe(coroutine, background_loop())
    try:
        return future.result()
    except BaseException:
        # Ctrl-C while waiting: cancel it, so that what it started is cleaned up (_bind
        # stops an emulator it started and closes the providers it built when cancelled).
        future.cancel()
        raise


def connect(
    *specs: str,
    emulate: bool = False,
    notice: Callable[[str], None] | None = print,
    emulator_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> _Connecting:
    """Bind ``"provider:model"`` specs: the real service where a key exists, else the emulator.

    Args:
        *specs: model strings, e.g. ``"anthropic:claude-haiku-4-5"``.
        emulate: use the emulator for every provider, keys or not.
        notice: called with one line per provider saying where its requests go
            (default ``print``; ``None`` says nothing).
        emulator_options: for the emulator, if one is started (``ttft=``, ``tps=``...
            to make it answer at a model's pace; the shared notebook emulator takes
            them from the first ``connect`` that starts it).
        **options: for :func:`rxllm.registry.model` (``timeout=``, ``allow_unknown_model=``...).

    Raises:
        ConfigurationError: a malformed spec, an unknown provider or model, or a
            provider with no key that the emulator does not speak.
        rxllm.bridge.BlockingCallInEventLoopError: ``with connect(...)`` on a thread
            that runs an event loop (use ``async with`` or ``await`` there).

    Example:
        >>> with rxllm.connect("anthropic:claude-haiku-4-5") as (claude,):
        ...     print(rxllm.collect_sync(claude.stream("Hi", max_tokens=20)).text)
    """
    if not specs:
        raise ValueError("connect() needs at least one 'provider:model'")
    return _Connecting(specs, emulate, notice, options, dict(emulator_options or {}))


async def _bind(
    specs: Sequence[str],
    emulate: bool,
    notice: Callable[[str], None] | None,
    options: dict[str, Any],
    emulator_options: dict[str, Any],
    *,
    shared: bool,
) -> Connection:
    wanted: list[tuple[str, str]] = []
    routes: dict[str, Route] = {}
    for spec in specs:
        provider_part, model_id = registry.parse_model_spec(spec)
        vendor = registry.spec(provider_part)
        name = vendor.name
        wanted.append((name, model_id))
        if name in routes:
            continue
        found = config.resolve_credentials(vendor)
        if not emulate and (found.api_key is not None or not vendor.key_required):
            reason = "API key found" if found.api_key is not None else "no key needed"
            routes[name] = Route(name, False, None, reason)
            continue
        variables = " or ".join(vendor.key_env) or "its API key"
        if vendor.emulator is None:
            raise ConfigurationError(
                f"no API key for {name}: set {variables} (rxllm's local emulator has no "
                f"dialect for {name})",
                provider=name,
            )
        reason = "asked to emulate" if emulate else f"no {variables} set"
        routes[name] = Route(name, True, None, reason)
    # Check every model, and build the real services' providers (their SDK clients are
    # made on first use), before starting anything.
    providers: dict[str, Provider[Any]] = {}
    emulator: Emulator | None = None
    try:
        for name, model_id in wanted:
            if routes[name].emulated:
                registry.model(f"{name}:{model_id}", api_key=_EMULATOR_KEY, **options)
            else:
                model = registry.model(f"{name}:{model_id}", **options)
                providers.setdefault(name, model.provider)
        if any(route.emulated for route in routes.values()):
            emulator = await (
                _shared_emulator(emulator_options) if shared else _own_emulator(emulator_options)
            )
        bound: list[registry.BoundModel] = []
        for name, model_id in wanted:
            route = routes[name]
            if name not in providers:  # one provider object (one connection pool) per provider
                assert emulator is not None
                url = emulator.base_url(name)
                providers[name] = registry.model(
                    f"{name}:{model_id}", api_key=_EMULATOR_KEY, base_url=url, **options
                ).provider
            provider = providers[name]
            routes[name] = Route(name, route.emulated, provider.base_url, route.reason)
            bound.append(registry.BoundModel(provider, model_id))
        if notice is not None:
            for route in routes.values():
                notice(route.describe())
    except BaseException:
        # Leave nothing behind: the providers built so far, and an emulator started for
        # this connection alone (a shared one stays for the loop's other connections).
        for provider in providers.values():
            await provider.aclose()
        if emulator is not None and not shared:
            await emulator.stop()
        raise
    return Connection(bound, routes, emulator, owns_emulator=not shared)


async def _own_emulator(emulator_options: dict[str, Any]) -> Emulator:
    from .emulator import Emulator

    emulator = Emulator(**emulator_options)
    await emulator.start()
    return emulator


async def _shared_emulator(emulator_options: dict[str, Any]) -> Emulator:
    loop = asyncio.get_running_loop()
    starting = _shared.get(loop)
    if starting is None:  # the first caller starts it; concurrent callers wait for it
        starting = _shared[loop] = loop.create_task(_own_emulator(emulator_options))
    try:
        return await asyncio.shield(starting)
    except BaseException:
        if starting.done() and _shared.get(loop) is starting:
            del _shared[loop]
        raise


async def stop_shared_emulator() -> None:
    """Stop the emulator that ``await connect(...)`` shares on the running loop, if any.

    Models bound to it stop working; the next ``await connect(...)`` starts a new one.
    """
    loop = asyncio.get_running_loop()
    starting = _shared.pop(loop, None)
    if starting is not None:
        await (await starting).stop()

"""``Provider``: the one interface every vendor implements (the seed's ``ILLMProvider``).

A provider module (``rxllm/providers/<vendor>.py``) is a mapper and nothing
more: it subclasses :class:`Provider`, names its vendor's
:class:`~rxllm.vendors.ProviderSpec` as ``spec`` (what the vendor *is* lives
there, declared once), and implements

- ``_make_client()``: build the official SDK client (retries off);
- ``_events(request)``: call the SDK, map each chunk to a ``StreamEvent``,
  end with exactly one ``DoneEvent`` (usage normalized, cost left ``None``),
  raise an ``rxllm.errors`` error for anything that goes wrong (including a
  stream that ends without its terminal event), and close the SDK stream in
  a ``finally`` so that cancellation closes the connection.

Everything else (validation, cost from the catalog, the cold Observable,
``generate``) lives here once.
"""

from __future__ import annotations

import abc
import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import SecretStr

from . import catalog
from .errors import ConfigurationError
from .events import DoneEvent, StreamEvent, TokenEvent
from .redaction import check_api_key, protect
from .request import StreamRequest
from .result import StreamResult
from .stream import LLMStream
from .vendors import ProviderSpec

__all__ = ["Provider"]

_Client = TypeVar("_Client")


class Provider(abc.ABC, Generic[_Client]):
    """A long-lived, shared handle on one vendor's API: owns the SDK client and its pool.

    What the vendor is (name, key variables, default model...) is its
    :class:`~rxllm.vendors.ProviderSpec`; a mapper class declares its own as ``spec``
    and serves other specs too (every OpenAI-compatible vendor runs on
    ``OpenAIProvider``). The constructor takes *resolved* values: build providers
    with :func:`rxllm.provider`, which reads keys and base URLs from the
    environment and the settings in one place (:func:`rxllm.config.resolve_credentials`).

    Example:
        >>> p = rxllm.provider("anthropic")  # ANTHROPIC_API_KEY
        >>> await p.generate(StreamRequest(model="claude-sonnet-4-6", prompt="Hi"))
    """

    spec: ProviderSpec
    """The vendor this provider serves (per class; ``spec=`` per instance)."""
    continues_prefill: ClassVar[bool] = False
    """Whether the API continues a trailing assistant message (Anthropic's prefill).

    Providers without it resume a cut reply with an explicit instruction
    (:meth:`StreamRequest.with_continuation_instruction`), and any text the model
    repeats from the end of the cut reply is dropped.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A plugin written before specs declares ``name``, ``aliases``, ``api_key_env``,
        # ``base_url_env`` and ``default_model`` on its class: that is its spec.
        if "spec" in cls.__dict__ or "name" not in cls.__dict__:
            return
        legacy_name = cls.__dict__["name"]
        if not (isinstance(legacy_name, str) and legacy_name):
            cls.spec = None  # type: ignore[assignment]  # an inherited spec is not its own
        else:
            cls.spec = ProviderSpec(
                name=legacy_name,
                mapper=cls,
                aliases=tuple(getattr(cls, "aliases", ())),
                key_env=tuple(getattr(cls, "api_key_env", ())),
                base_url_env=getattr(cls, "base_url_env", None),
                default_model=getattr(cls, "default_model", None),
            )

    def __init__(
        self,
        *,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        default_model: str | None = None,
        default_max_tokens: int | None = None,
        spec: ProviderSpec | None = None,
        **options: Any,
    ) -> None:
        self.spec = spec or type(self).spec
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key and self.spec.key_required:
            raise ConfigurationError(
                f"no API key for {self.spec.name}: {self.spec.key_hint()}",
                provider=self.spec.name,
            )
        if key:
            try:
                check_api_key(key, provider=self.spec.name)
            except ValueError as error:
                raise ConfigurationError(str(error), provider=self.spec.name) from None
            protect(key)
        self._api_key = SecretStr(key or "")
        self.base_url: str | None = base_url or self.spec.base_url
        if not self.base_url and self.spec.base_url_required:
            variable = f"set {self.spec.base_url_env} or " if self.spec.base_url_env else ""
            raise ConfigurationError(
                f"{self.spec.name} has no address of its own: {variable}pass base_url= "
                f"({self.spec.base_url_means})",
                provider=self.spec.name,
            )
        self.timeout = timeout
        self.default_model: str = default_model or self.spec.default_model or ""
        self.default_max_tokens = default_max_tokens or self.spec.default_max_tokens
        self.options = {**self.spec.options, **options}
        # SDK clients hold connection pools bound to one event loop: keep one per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Client] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def name(self) -> str:
        """The registry name of the vendor served, e.g. ``"anthropic"`` or ``"ollama"``."""
        return self.spec.name

    # -- what a vendor module implements ------------------------------------------------

    @abc.abstractmethod
    def _make_client(self) -> _Client:
        """Build the official SDK client for the running loop, with SDK retries off."""

    @abc.abstractmethod
    def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        """Stream one request: tokens and reasoning, then exactly one ``DoneEvent``."""

    async def _close_client(self, client: _Client) -> None:  # an optional hook: empty on purpose
        """Release a client's connections (override when the SDK needs it)."""

    # -- the public surface ---------------------------------------------------------------

    @property
    def api_key(self) -> SecretStr:
        """The API key, as a secret that never prints (empty for servers that need none)."""
        return self._api_key

    def client(self) -> _Client:
        """The SDK client for the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._make_client()
            self._clients[loop] = client
        return client

    def stream(self, request: StreamRequest | str, **fields: Any) -> LLMStream:
        """A cold ``Observable[StreamEvent]`` for ``request`` (or a prompt and fields).

        Nothing is sent until it is subscribed; each subscription is one request.
        """
        return LLMStream(self, self.request(request, **fields))

    def max_tokens(self, request: StreamRequest) -> int | None:
        """The request's ``max_tokens``, else this provider's default (``None``: the API's)."""
        return request.max_tokens if request.max_tokens is not None else self.default_max_tokens

    def request(self, request: StreamRequest | str, **fields: Any) -> StreamRequest:
        """Build and validate a request: a prompt string, or a request with fields replaced.

        Raises:
            ValueError: a field is invalid, or ``max_tokens`` is above what the
                catalog says the model can write.
        """
        if isinstance(request, StreamRequest):
            built = request.replace(**fields) if fields else request
        else:
            fields.setdefault("model", self.default_model)
            built = StreamRequest(prompt=request, **fields)
        if built.max_tokens is not None:
            known = catalog.info(self.name, built.model)
            if known is not None and built.max_tokens > known.max_output_tokens:
                raise ValueError(
                    f"StreamRequest.max_tokens is {built.max_tokens}, above the "
                    f"{known.max_output_tokens:,} tokens {self.name}:{known.id} can write"
                )
        return built

    async def events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        """The provider's events for one request, with cost filled in from the catalog.

        A request that ends with an assistant message (a cut reply to continue) is
        sent as a continuation instruction to providers without native prefill.
        """
        prefill = request.prefill
        if prefill and not self.continues_prefill:
            source = _without_repeated_start(
                self._events(request.with_continuation_instruction()), prefill
            )
        else:
            source = self._events(request)
        async for event in source:
            if isinstance(event, DoneEvent) and event.usage.cost is None:
                cost = catalog.cost(self.name, event.model or request.model, event.usage)
                if cost is not None:
                    event = DoneEvent(
                        usage=event.usage.with_cost(cost),
                        finish_reason=event.finish_reason,
                        model=event.model,
                        provider=event.provider,
                        details=event.details,
                    )
            yield event

    async def complete(self, request: StreamRequest | str, **fields: Any) -> StreamResult:
        """Stream ``request`` to the end and return text, reasoning, usage and finish reason."""
        built = self.request(request, **fields)
        return StreamResult.from_events([event async for event in self.events(built)])

    async def generate(self, request: StreamRequest | str, **fields: Any) -> str:
        """The whole reply text (the seed's ``generate``)."""
        return (await self.complete(request, **fields)).text

    def available_models(self) -> list[str]:
        """Model ids this provider offers, from rxllm's catalog."""
        return catalog.models(self.name)

    async def aclose(self) -> None:
        """Close the SDK clients of every event loop this provider streamed on.

        That includes rxllm's background loop, which serves ``collect_sync`` and
        ``iterate``. A loop that is already closed took its connections with it.
        """
        running = asyncio.get_running_loop()
        for loop, client in self._take_clients():
            if loop is running:
                await self._close_client(client)
            elif loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(self._close_client(client), loop)
                await asyncio.wrap_future(closing)

    def close(self) -> None:
        """Blocking :meth:`aclose`, for scripts (from async code, ``await aclose()``)."""
        for loop, client in self._take_clients():
            if _on_loop_thread(loop):
                raise RuntimeError("close() would block its own event loop: await aclose()")
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._close_client(client), loop).result()
            elif not loop.is_closed():
                loop.run_until_complete(self._close_client(client))

    def _take_clients(self) -> list[tuple[asyncio.AbstractEventLoop, _Client]]:
        clients = list(self._clients.items())
        self._clients.clear()
        return clients

    def __repr__(self) -> str:
        url = f" base_url={self.base_url!r}" if self.base_url else ""
        return f"<{type(self).__name__} {self.name}{url} api_key=**********>"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds an API key and cannot be pickled")


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# A repeat shorter than this is as likely a coincidence (" the") as a restated ending.
_MIN_REPEAT = 12


async def _without_repeated_start(
    events: AsyncIterator[StreamEvent], partial: str
) -> AsyncIterator[StreamEvent]:
    """``events`` minus a start that restates the end of ``partial``.

    Models asked to continue a cut reply sometimes begin by repeating its last
    words (or all of it). Tokens are held only while they could still be such a
    repeat; anything held is delivered if the stream fails, so no text is lost.
    """
    held: list[TokenEvent] = []
    deciding = True
    try:
        async for event in events:
            if deciding and isinstance(event, TokenEvent):
                held.append(event)
                text = "".join(e.text for e in held)
                undecided, repeated = _repeat_of_ending(partial, text)
                if undecided:
                    continue
                deciding = False
                for kept in _drop_chars(held, repeated):
                    yield kept
                continue
            if deciding and isinstance(event, DoneEvent):
                deciding = False
                text = "".join(e.text for e in held)
                for kept in _drop_chars(held, _repeat_of_ending(partial, text)[1]):
                    yield kept
            yield event
    except Exception:
        if deciding:
            for kept in held:
                yield kept
        raise


def _repeat_of_ending(partial: str, text: str) -> tuple[bool, int]:
    """(could ``text`` still grow into a repeat of an ending of ``partial``, the longest
    ending of ``partial`` that ``text`` already starts with)."""
    undecided = False
    repeated = 0
    for start in range(len(partial) - _MIN_REPEAT + 1):
        ending = partial[start:]
        if ending.startswith(text):
            undecided = True
            break
        if text.startswith(ending):
            repeated = len(ending)
            break
    return undecided, repeated


def _drop_chars(tokens: list[TokenEvent], count: int) -> list[TokenEvent]:
    kept: list[TokenEvent] = []
    for token in tokens:
        if count >= len(token.text):
            count -= len(token.text)
            continue
        kept.append(TokenEvent(token.text[count:]) if count else token)
        count = 0
    return kept

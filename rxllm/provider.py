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
  a ``finally`` so that cancellation closes the connection;
- or, instead of ``_events``, ``_batches(request)``: the same events as a list
  per network read (what the built-in providers do: the stream's consumers then
  pay their await per read, not per event). A batch is never empty; events a
  read completed before an error are yielded before it is raised; the
  ``DoneEvent`` is the last event of the last batch. A provider that fills in
  its done event's cost itself (``self._priced(done, request)``) says so with
  ``prices_done = True``, and its batches reach the stream with nothing between.

Everything else (validation, cost from the catalog, the cold Observable,
``generate``) lives here once.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar, cast

from pydantic import SecretStr
from reactivex import Observable

from . import catalog
from .bridge import StreamRun, current_stream
from .consume import collect, collect_sync
from .content import DocumentPart, ImagePart
from .errors import CancelledError, ConfigurationError, UnsupportedContentError
from .events import DoneEvent, StreamEvent, TokenEvent
from .operators import RateLimiter, rate_limit
from .operators import timeout as total_timeout
from .redaction import check_api_key, protect
from .request import StreamRequest
from .result import StreamResult
from .stream import LLMStream
from .structured import with_objects
from .tools import with_complete_calls
from .tracing import spanned, start_span
from .usage import UsageTracker
from .vendors import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, ProviderSpec

__all__ = ["Provider", "StreamOperator"]

_Client = TypeVar("_Client")

StreamOperator: TypeAlias = Callable[[Observable[StreamEvent]], Observable[StreamEvent]]
"""What ``.pipe()`` takes: ``take_tokens(100)``, ``retry_on_interrupt(3)``..."""


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
    prices_done: ClassVar[bool] = False
    """Whether the provider's ``_batches`` fills in its ``DoneEvent``'s cost itself
    (``self._priced(done, request)``). Otherwise every batch passes through one more
    generator that does it, and on a stream of one message per read (gRPC) each wait
    for the network travels through that generator too."""
    content_parts: ClassVar[frozenset[str]] = frozenset()
    """The message parts beyond text the vendor takes: ``"image"`` (bytes),
    ``"image_url"``, ``"document"`` (PDF bytes), ``"document_url"``. Any other part
    is refused before the request (:class:`~rxllm.errors.UnsupportedContentError`).
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
        max_connections: int | None = None,
        **options: Any,
    ) -> None:
        self.spec = spec or type(self).spec
        for option, value in (("timeout", timeout), ("max_connections", max_connections)):
            if value is not None and not value > 0:
                raise ConfigurationError(
                    f"{option} must be positive, got {value!r}", provider=self.spec.name
                )
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
        # The same meaning on every vendor: the longest wait for the connection, the
        # response headers or the next event; never a deadline for the whole stream.
        self.timeout: float = timeout if timeout is not None else DEFAULT_TIMEOUT
        # Streams at once per event loop (each loop has its own client and pool); more
        # wait for a free slot, and that wait is not bounded by ``timeout``.
        self.max_connections: int = max_connections or DEFAULT_MAX_CONNECTIONS
        self.default_model: str = default_model or self.spec.default_model or ""
        self.default_max_tokens = default_max_tokens or self.spec.default_max_tokens
        self.options = {**self.spec.options, **options}
        # SDK clients hold connection pools bound to one event loop: keep one per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Client] = (
            weakref.WeakKeyDictionary()
        )
        # The streams running on those clients (registered by client()): closing stops them.
        self._runs: set[StreamRun] = set()
        self._runs_lock = threading.Lock()
        # Applied to every stream (see stream()): a shared budget and a usage count.
        self.limiter: RateLimiter | None = None
        self.usage_tracker: UsageTracker | None = None

    @property
    def name(self) -> str:
        """The registry name of the vendor served, e.g. ``"anthropic"`` or ``"ollama"``."""
        return self.spec.name

    # -- what a vendor module implements ------------------------------------------------

    @abc.abstractmethod
    def _make_client(self) -> _Client:
        """Build the official SDK client for the running loop, with SDK retries off."""

    def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        """Stream one request: tokens and reasoning, then exactly one ``DoneEvent``.

        Implement this or :meth:`_batches` (see the module docstring).
        """
        if type(self)._batches is Provider._batches:
            raise NotImplementedError(
                f"{type(self).__name__} implements neither _events nor _batches"
            )
        return _flattened(self._batches(request))

    def _batches(self, request: StreamRequest) -> AsyncIterator[Sequence[StreamEvent]]:
        """The events of :meth:`_events`, a batch per network read (one each by default)."""
        return _one_by_one(self._events(request))

    async def _close_client(self, client: _Client) -> None:  # an optional hook: empty on purpose
        """Release a client's connections (override when the SDK needs it)."""

    # -- the public surface ---------------------------------------------------------------

    @property
    def api_key(self) -> SecretStr:
        """The API key, as a secret that never prints (empty for servers that need none)."""
        return self._api_key

    def client(self) -> _Client:
        """The SDK client for the running event loop (made on first use).

        A stream asks for it as it starts: from then on, closing the provider stops
        that stream before it closes the client under it.
        """
        loop = asyncio.get_running_loop()
        # Registered before the client is looked up: a close that takes the clients
        # first and then the runs cannot miss a stream holding a client it closes.
        run = current_stream()
        if run is not None:
            self._track(run)
        client = self._clients.get(loop)
        if client is None:
            client = self._make_client()
            self._clients[loop] = client
        return client

    def stream(self, request: StreamRequest | str | None = None, **fields: Any) -> LLMStream:
        """A cold ``Observable[StreamEvent]`` for ``request`` (or a prompt and fields).

        Every :class:`~rxllm.request.StreamRequest` field can be a keyword
        (``stream(messages=[...], system=...)``). Nothing is sent until it is
        subscribed; each subscription is one request. Each waits for this provider's
        :attr:`limiter` (set from ``requests_per_minute`` / ``tokens_per_minute`` in
        the configuration by :func:`rxllm.provider`) and counts in its
        :attr:`usage_tracker`, when they are set; an explicit ``rate_limit(...)``
        piped on top waits for both budgets.
        """
        stream = LLMStream(self, self.request(request, **fields))
        if self.usage_tracker is not None:
            stream = cast(LLMStream, self.usage_tracker.track()(stream))
        if self.limiter is not None:
            stream = cast(LLMStream, rate_limit(self.limiter)(stream))
        return stream

    def max_tokens(self, request: StreamRequest) -> int | None:
        """The request's ``max_tokens``, else this provider's default (``None``: the API's)."""
        return request.max_tokens if request.max_tokens is not None else self.default_max_tokens

    def request(self, request: StreamRequest | str | None = None, **fields: Any) -> StreamRequest:
        """Build and validate a request: a prompt string, or a request with fields replaced.

        Without ``request``, the fields alone make it (``messages=`` or ``prompt=``).

        Raises:
            ValueError: a field is invalid, there is neither prompt nor messages,
                or ``max_tokens`` is above what the catalog says the model can write.
            TypeError: an unknown field, or a prompt given both ways.
        """
        if isinstance(request, StreamRequest):
            built = request.replace(**fields) if fields else request
        else:
            if request is not None:
                if "prompt" in fields:
                    raise TypeError("got a prompt twice: as the first argument and as prompt=")
                fields["prompt"] = request
            fields.setdefault("model", self.default_model)
            built = StreamRequest(**fields)
        self._check_parts(built)
        if built.max_tokens is not None:
            known = catalog.info(self.name, built.model)
            if known is not None and built.max_tokens > known.max_output_tokens:
                raise ValueError(
                    f"StreamRequest.max_tokens is {built.max_tokens}, above the "
                    f"{known.max_output_tokens:,} tokens {self.name}:{known.id} can write"
                )
        return built

    def _check_parts(self, request: StreamRequest) -> None:
        """Refuse a message part this vendor cannot take, naming both (no request made)."""
        for number, message in enumerate(request.messages):
            for part in message.parts:
                if isinstance(part, ImagePart | DocumentPart):
                    kind = part.type if part.data is not None else f"{part.type}_url"
                    if kind not in self.content_parts:
                        takes = ", ".join(sorted(self.content_parts)) or "text only"
                        raise UnsupportedContentError(
                            f"{self.name} cannot take {part.describe()} in messages[{number}]; "
                            f"it takes: {takes}",
                            provider=self.name,
                            model=request.model,
                        )

    def events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        """The provider's events for one request, with cost filled in from the catalog.

        Each call is one request, and one OpenTelemetry span when tracing is on
        (:mod:`rxllm.tracing`).

        A request that ends with an assistant message (a cut reply to continue) is
        sent as a continuation instruction to providers without native prefill. A
        continuation that begins by restating the cut text has that start removed only
        when the restatement is certain: it repeats an ending of the cut text of at least
        32 characters, more than twice as long as any span the cut text already repeats.
        The ``done`` then says ``details["resume_restated_dropped"]`` (characters
        removed); a start that repeats 12 or more characters of the cut text's ending but
        is kept says ``details["resume_overlap_kept"]`` (characters kept).
        """
        shaped = self._shaped(request)
        return _flattened(self._priced_batches(request)) if shaped is None else shaped

    def batches(self, request: StreamRequest) -> AsyncIterator[Sequence[StreamEvent]]:
        """The events of :meth:`events`, in batches: the events of one network read each.

        What an :class:`~rxllm.stream.LLMStream` iterates. A plain request (no tools,
        no ``response_format``, no prefill to continue, no span recorded) comes as the
        provider read it; any other passes event by event through what shapes it (one
        event a batch).
        """
        shaped = self._shaped(request)
        return self._priced_batches(request) if shaped is None else _one_by_one(shaped)

    def _shaped(self, request: StreamRequest) -> AsyncIterator[StreamEvent] | None:
        """The request's events through what shapes them (its span included); ``None``
        for a plain request, which needs none of it (only its cost filled in)."""
        span = start_span(self, request)
        if (
            span is None
            and not request.tools
            and request.response_format is None
            and (not request.prefill or self.continues_prefill)
        ):
            return None
        events = self._shaped_events(request)
        return events if span is None else spanned(span, request, events)

    def _priced_batches(self, request: StreamRequest) -> AsyncIterator[Sequence[StreamEvent]]:
        """The provider's batches, the ``DoneEvent``'s cost filled in (see ``prices_done``)."""
        batches = self._batches(request)
        return batches if self.prices_done else self._pricing(batches, request)

    async def _pricing(
        self, batches: AsyncIterator[Sequence[StreamEvent]], request: StreamRequest
    ) -> AsyncIterator[Sequence[StreamEvent]]:
        async for batch in batches:
            last = batch[-1]
            if type(last) is DoneEvent:
                priced = self._priced(last, request)
                if priced is not last:
                    batch = [*batch[:-1], priced]
            yield batch

    def _priced(self, done: DoneEvent, request: StreamRequest) -> DoneEvent:
        """``done`` with its cost from the catalog, when it has none and the model is known."""
        if done.usage.cost is not None:
            return done
        cost = catalog.cost(self.name, done.model or request.model, done.usage)
        if cost is None:
            return done
        return DoneEvent(
            usage=done.usage.with_cost(cost),
            finish_reason=done.finish_reason,
            model=done.model,
            provider=done.provider,
            details=done.details,
        )

    async def _shaped_events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        prefill = request.prefill
        if prefill and not self.continues_prefill:
            source = _without_repeated_start(
                self._events(request.with_continuation_instruction()), prefill
            )
        else:
            source = self._events(request)
        if request.tools:
            source = with_complete_calls(source, provider=self.name, model=request.model)
        if request.response_format is not None:
            source = with_objects(source, request.response_format, prefill=prefill)
        async for event in source:
            if isinstance(event, DoneEvent):
                event = self._priced(event, request)
            yield event

    async def complete(
        self,
        request: StreamRequest | str | None = None,
        *,
        operators: Sequence[StreamOperator] = (),
        timeout: float | None = None,  # noqa: ASYNC109 - the timeout(total=) operator
        **fields: Any,
    ) -> StreamResult:
        """Stream ``request`` to the end and return text, reasoning, usage and finish reason.

        Takes what :meth:`stream` takes, plus ``operators`` piped onto the stream in
        order (``[take_tokens(100), retry_on_interrupt(3)]``) and ``timeout``: a
        deadline in seconds for the whole call, the ``timeout(total=...)`` operator
        piped last (unlike a provider's ``timeout=``, a limit per read). It runs as a
        stream of its own (through the bridge, like ``stream()``), so closing the
        provider meanwhile ends it with ``CancelledError`` too.

        Raises:
            rxllm.errors.TimeoutError: the deadline passed (phase ``total``).
        """
        return await collect(self._pipeline(request, operators, timeout, fields))

    async def generate(
        self,
        request: StreamRequest | str | None = None,
        *,
        operators: Sequence[StreamOperator] = (),
        timeout: float | None = None,  # noqa: ASYNC109 - the timeout(total=) operator
        **fields: Any,
    ) -> str:
        """The whole reply text (the seed's ``generate``); arguments as :meth:`complete`.

        Example:
            >>> await provider.generate("Hi", timeout=30, operators=[take_tokens(100)])
        """
        result = await collect(self._pipeline(request, operators, timeout, fields))
        return result.text

    def generate_sync(
        self,
        request: StreamRequest | str | None = None,
        *,
        operators: Sequence[StreamOperator] = (),
        timeout: float | None = None,
        **fields: Any,
    ) -> str:
        """Blocking :meth:`generate`, for scripts (runs on rxllm's background loop,
        like :func:`rxllm.collect_sync`; from async code, ``await generate()``).

        Example:
            >>> print(provider.generate_sync("Hi", max_tokens=50))
        """
        return collect_sync(self._pipeline(request, operators, timeout, fields)).text

    def _pipeline(
        self,
        request: StreamRequest | str | None,
        operators: Sequence[StreamOperator],
        timeout: float | None,
        fields: dict[str, Any],
    ) -> Observable[StreamEvent]:
        """The stream of ``request``, through ``operators``, then the ``timeout`` deadline."""
        stream: Observable[StreamEvent] = self.stream(request, **fields)
        for operator in operators:
            stream = operator(stream)
        if timeout is not None:
            stream = total_timeout(total=timeout)(stream)
        return stream

    def available_models(self) -> list[str]:
        """Model ids this provider offers, from rxllm's catalog."""
        return catalog.models(self.name)

    async def aclose(self) -> None:
        """Close the SDK clients of every event loop this provider streamed on.

        Streams still running are stopped first: each closes its connection and ends
        with :class:`~rxllm.errors.CancelledError` ("the provider was closed"); then
        the clients close. That includes rxllm's background loop, which serves
        ``collect_sync`` and ``iterate``. A loop that is already closed took its
        connections with it. The provider stays usable: a later stream makes a new client.
        """
        running = asyncio.get_running_loop()
        for loop, client, runs in self._take_clients():
            if loop is running:
                await self._close_on_loop(client, runs)
            elif loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(self._close_on_loop(client, runs), loop)
                await asyncio.wrap_future(closing)

    def close(self) -> None:
        """Blocking :meth:`aclose`, for scripts (from async code, ``await aclose()``).

        May be called from any thread but the one running a loop this provider
        streamed on; streams still running end as with :meth:`aclose`.
        """
        if any(_on_loop_thread(loop) for loop in self._loops()):
            raise RuntimeError("close() would block its own event loop: await aclose()")
        for loop, client, runs in self._take_clients():
            if loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(self._close_on_loop(client, runs), loop)
                closing.result()
            elif not loop.is_closed():
                loop.run_until_complete(self._close_on_loop(client, runs))

    def _take_clients(
        self,
    ) -> list[tuple[asyncio.AbstractEventLoop, _Client | None, list[StreamRun]]]:
        """Forget every loop's client and the streams running on them, by loop."""
        # Clients first, then runs: see client().
        clients = dict(self._clients.items())
        self._clients.clear()
        with self._runs_lock:
            runs, self._runs = self._runs, set()
        by_loop: dict[asyncio.AbstractEventLoop, list[StreamRun]] = {}
        for run in runs:
            if not run.done:
                by_loop.setdefault(run.loop, []).append(run)
        loops = [*clients, *(loop for loop in by_loop if loop not in clients)]
        return [(loop, clients.get(loop), by_loop.get(loop, [])) for loop in loops]

    def _loops(self) -> set[asyncio.AbstractEventLoop]:
        with self._runs_lock:
            loops = {run.loop for run in self._runs}
        return loops | set(self._clients.keys())

    def _track(self, run: StreamRun) -> None:
        with self._runs_lock:
            if run in self._runs:
                return
            self._runs.add(run)
        run.add_done_callback(self._untrack)

    def _untrack(self, run: StreamRun) -> None:
        with self._runs_lock:
            self._runs.discard(run)

    async def _close_on_loop(self, client: _Client | None, runs: list[StreamRun]) -> None:
        """On one loop: stop its streams, let each close its own response, close the client."""
        for run in runs:
            run.stop(
                CancelledError(
                    "the provider was closed while this stream ran (aclose()/close())",
                    provider=self.name,
                )
            )
        this = current_stream()  # closed from inside one of its own streams: not waited for
        for run in runs:
            if run is not this:
                await run.wait()
        if client is not None:
            await self._close_client(client)

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


# -- resuming without prefill: a restated start is dropped only when that is certain --------
#
# The rule: the start of a continuation is dropped only when it repeats an ending of the cut
# text that is at least 32 characters long and more than twice as long as the longest span
# the cut text already repeats within itself.
#
# Why a genuine reply keeps its text: a genuine continuation that starts with an ending S of
# the cut text makes the reply say S twice in a row, across the cut. If the reply repeats a
# unit of at most half of S (``ha ha ha``, a rule of dashes), S is made of that unit and the
# cut text already repeats at least half of S; if the reply returns to S after writing it
# once, the cut text repeats all of S. Both are kept. Random text rarely repeats 32
# characters across a given cut by chance: the emulator's replies, whose 60-word vocabulary
# makes repeats likelier than prose does, repeat two long words ("backpressure smörgåsbord",
# 25 characters) across a cut about once in 10,000 to 40,000 replies, and 32 characters in
# none of the 6 million cuts of 90,000 replies tried. The case left is a reply that repeats
# a long span verbatim for the first time across the cut (a refrain cut during its first
# return): no rule that reads only the text can tell it from a model restating its last
# words, so it is dropped and reported. The done event says what was dropped
# (``resume_restated_dropped``) and what was kept although it repeats an ending of the cut
# text (``resume_overlap_kept``), in characters, so neither happens silently.

# Shorter restatements are kept: a few words can repeat by chance (see above).
_MIN_RESTATEMENT = 32
# Kept overlaps this long are reported; shorter ones are as likely a coincidence (" the").
_MIN_REPORTED_OVERLAP = 12
_RESTATED_DROPPED = "resume_restated_dropped"
_OVERLAP_KEPT = "resume_overlap_kept"


async def _flattened(batches: AsyncIterator[Sequence[StreamEvent]]) -> AsyncIterator[StreamEvent]:
    async for batch in batches:
        for event in batch:
            yield event


async def _one_by_one(events: AsyncIterator[StreamEvent]) -> AsyncIterator[Sequence[StreamEvent]]:
    async for event in events:
        yield (event,)


async def _without_repeated_start(
    events: AsyncIterator[StreamEvent], partial: str
) -> AsyncIterator[StreamEvent]:
    """``events`` minus a start that certainly restates the end of ``partial`` (see above).

    Tokens are held only while they could still grow into such a restatement; anything
    held is delivered if the stream fails, so no text is lost. The ``done`` reports what
    was dropped (``resume_restated_dropped``) or kept although it repeats an ending of
    ``partial`` (``resume_overlap_kept``), in characters.
    """
    held: list[TokenEvent] = []
    restatement = _Restatement(partial)
    deciding = True
    dropped = 0
    head = ""  # the first characters delivered, to report an overlap that was kept
    try:
        async for event in events:
            if deciding and isinstance(event, TokenEvent):
                held.append(event)
                undecided, dropped = restatement.of(_text(held))
                if undecided:
                    continue
                deciding = False
                for kept in _drop_chars(held, dropped):
                    head = _head(head, kept, partial)
                    yield kept
                continue
            if deciding and isinstance(event, DoneEvent):
                deciding = False  # a reply that ends still short of a restatement: not one
                for kept in held:
                    head = _head(head, kept, partial)
                    yield kept
            if isinstance(event, TokenEvent):
                head = _head(head, event, partial)
            elif isinstance(event, DoneEvent):
                event = _with_resume_details(event, dropped, _overlap(partial, head))
            yield event
    except Exception:
        if deciding:
            for kept in held:
                yield kept
        raise


def _text(tokens: list[TokenEvent]) -> str:
    return "".join(token.text for token in tokens)


def _head(head: str, token: TokenEvent, partial: str) -> str:
    """``head`` plus ``token``'s text, up to ``len(partial)`` characters (enough for an overlap)."""
    missing = len(partial) - len(head)
    return head + token.text[:missing] if missing > 0 else head


def _with_resume_details(done: DoneEvent, dropped: int, kept: int) -> DoneEvent:
    details = dict(done.details)
    if dropped:
        details[_RESTATED_DROPPED] = dropped
    if kept >= _MIN_REPORTED_OVERLAP:
        details[_OVERLAP_KEPT] = kept
    if details == done.details:
        return done
    return DoneEvent(
        usage=done.usage,
        finish_reason=done.finish_reason,
        model=done.model,
        provider=done.provider,
        details=details,
    )


class _Restatement:
    """The rule above, for the continuations of one cut text.

    Its bound (:func:`_shortest_restatement`, O(n log n)) is computed once, and only for a
    continuation whose first :data:`_MIN_RESTATEMENT` characters occur in the cut text.
    """

    def __init__(self, partial: str) -> None:
        self.partial = partial
        self._shortest: int | None = None

    def of(self, text: str) -> tuple[bool, int]:
        """(could ``text``, a continuation's start, still grow into a restatement to drop;
        the length of the one it starts with, 0 for none)."""
        undecided, length = _repeat_of_ending(self.partial, text, _MIN_RESTATEMENT)
        if not (undecided or length) or len(text) < _MIN_RESTATEMENT:
            return undecided, 0
        if self._shortest is None:
            self._shortest = _shortest_restatement(self.partial)
        return _repeat_of_ending(self.partial, text, self._shortest)


def _repeat_of_ending(partial: str, text: str, shortest: int) -> tuple[bool, int]:
    """(could ``text`` still grow into an ending of ``partial`` at least ``shortest`` long;
    else the length of the longest such ending that ``text`` starts with, 0 for none).

    Candidates are where ``text``'s first ``shortest`` characters occur in ``partial``: with
    the bound of :func:`_shortest_restatement`, such a span occurs at most once.
    """
    last = len(partial) - shortest  # where the shortest qualifying ending starts
    if last < 0:
        return False, 0
    probe = text[:shortest]
    start = partial.find(probe, 0, last + len(probe))
    while start != -1:
        length = len(partial) - start
        if len(text) < length:
            if partial.startswith(text, start):
                return True, 0
        elif text.startswith(partial[start:]):
            return False, length
        start = partial.find(probe, start + 1, last + len(probe))
    return False, 0


def _overlap(partial: str, text: str) -> int:
    """The longest ending of ``partial`` that ``text`` starts with, when it is at least
    :data:`_MIN_REPORTED_OVERLAP` characters (0 otherwise)."""
    shortest = _MIN_REPORTED_OVERLAP
    probe, tail = text[:shortest], partial[-shortest:]
    if len(probe) < shortest:
        return 0
    start = partial.find(probe, max(0, len(partial) - len(text)))
    while start != -1:
        length = len(partial) - start
        # the ending's last characters first: a long run ("=====") then passes in O(1)
        if text.startswith(tail, length - shortest) and text.startswith(partial[start:]):
            return length
        start = partial.find(probe, start + 1)
    return 0


def _shortest_restatement(partial: str) -> int:
    """The length from which restating an ending of ``partial`` is certain (the rule above);
    above ``len(partial)`` when no ending qualifies."""
    if len(partial) < _MIN_RESTATEMENT:
        return len(partial) + 1
    return max(_MIN_RESTATEMENT, 2 * _longest_repeat(partial, len(partial) // 2 + 1) + 1)


# A polynomial hash of every span of one length: equal spans hash alike, so a repeat is never
# missed; a collision of unequal spans only reports a repeat that is not there (text kept).
_HASH_MODULUS = (1 << 61) - 1
_HASH_BASE = 1_000_000_007  # above every code point


def _longest_repeat(text: str, limit: int) -> int:
    """The length of the longest span found twice in ``text`` (the two may overlap), or
    ``limit`` when it is at least that long. O(n log n) in the length of ``text``."""
    prefix = [0]
    for char in text:
        prefix.append((prefix[-1] * _HASH_BASE + ord(char)) % _HASH_MODULUS)

    def repeats(length: int) -> bool:
        shift = pow(_HASH_BASE, length, _HASH_MODULUS)
        seen: set[int] = set()
        for start in range(len(text) - length + 1):
            span = (prefix[start + length] - prefix[start] * shift) % _HASH_MODULUS
            if span in seen:
                return True
            seen.add(span)
        return False

    found, missing = 0, 1  # a span of ``found`` repeats; of ``missing``: not known yet
    while missing < limit and repeats(missing):
        found, missing = missing, 2 * missing
    if missing >= limit:
        if repeats(limit):
            return limit
        missing = limit
    while missing - found > 1:  # now: ``found`` repeats, ``missing`` does not
        middle = (found + missing) // 2
        if repeats(middle):
            found = middle
        else:
            missing = middle
    return found


def _drop_chars(tokens: list[TokenEvent], count: int) -> list[TokenEvent]:
    kept: list[TokenEvent] = []
    for token in tokens:
        if count >= len(token.text):
            count -= len(token.text)
            continue
        kept.append(TokenEvent(token.text[count:]) if count else token)
        count = 0
    return kept

"""What the vendor modules share: the error rule book, retry-after parsing, key scrubbing.

The rule book (drawn as a table in :mod:`rxllm.errors`) is applied the way httpx maps
transport errors: each vendor module declares one table of ``(exception type(s),
translator or rxllm class)`` pairs and applies it in one place, around the body of its
event generator::

    _ERRORS = ErrorRules("Anthropic", [(anthropic.APIStatusError, _status_error), ...])

    async def _events(self, request):
        with _ERRORS.scope(provider=self.name, model=request.model, ...) as scope:
            async with client.messages.with_streaming_response.create(...) as raw:
                scope.reading = True
                async for sse in ...: ...

The vendor's rows come first, then the rules every vendor shares (``COMMON_RULES``):
a failed connect, a reset or closed connection, a read timeout, a malformed event, a
request the SDK refused. rxllm's own errors pass through untouched; an exception no
rule claims (a bug) becomes a non-retryable ``ProviderError`` with the original as its
cause, so every failure of a stream is an rxllm error.
"""

from __future__ import annotations

import asyncio
import builtins
import email.utils
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeAlias

import anyio
import httpx2

from .. import errors

__all__ = [
    "COMMON_RULES",
    "CONNECT_ERRORS",
    "TRANSPORT_ERRORS",
    "ErrorRules",
    "ErrorScope",
    "Rule",
    "Translator",
    "error_for_status",
    "grpc_transport_failure",
    "interrupted",
    "is_context_too_long",
    "is_wrong_key",
    "malformed",
    "refused_request",
    "retry_after_from_headers",
    "scrub",
    "transport_failure",
]

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx2.TransportError,
    httpx2.StreamError,
    ssl.SSLError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    OSError,
)
"""What a connection that fails or drops raises below the SDKs' own error types:
httpx2's transport and stream errors, and what escapes its mapping (TLS, anyio streams,
plain socket errors). Builtin ``TimeoutError`` is an ``OSError``."""

CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.ConnectError,  # refused, unreachable, DNS, TLS handshake (httpx2's "connect")
    httpx2.ConnectTimeout,
    ConnectionRefusedError,
    socket.gaierror,  # DNS
)
"""Exceptions that mean no connection could be made at all, found anywhere in an
error's ``__cause__``/``__context__`` chain (an SDK's connection error wraps them)."""

_TIMEOUTS: tuple[type[BaseException], ...] = (httpx2.TimeoutException, builtins.TimeoutError)

# -- statuses ---------------------------------------------------------------------------

_CONTEXT_TOO_LONG = re.compile(
    r"prompt is too long|context length|context window|maximum context|too many tokens"
    r"|exceeds the maximum number of tokens|input token count|maximum prompt length",
    re.IGNORECASE,
)
# A wrong key answered with 400 / INVALID_ARGUMENT (api.x.ai, Gemini's API_KEY_INVALID).
_WRONG_KEY = re.compile(
    r"incorrect api key|invalid api key|api key (is )?(invalid|missing)|api key not valid",
    re.IGNORECASE,
)

# gRPC codes (also google.rpc status names) as the HTTP status they stand for, so both
# map through one table. CANCELLED and DEADLINE_EXCEEDED are the call ending early (the
# SDK's own deadline is its read timeout), not a status a server chose; ABORTED is a
# server-side failure here, UNIMPLEMENTED a request this server cannot serve.
_GRPC_AS_HTTP: Mapping[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "UNIMPLEMENTED": 405,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "ABORTED": 500,
    "UNAVAILABLE": 503,
}
_GRPC_CUT = frozenset({"CANCELLED", "DEADLINE_EXCEEDED"})


def error_for_status(
    status: int | str,
    message: str,
    *,
    provider: str,
    model: str | None,
    retry_after: float | None = None,
) -> errors.ProviderError:
    """The rxllm error for an HTTP status or a gRPC code name (the rule book's statuses).

    ``message`` decides between a plain invalid request and a prompt that does not fit
    (``ContextTooLongError``) or a wrong key (``AuthenticationError``) for a 400 or
    INVALID_ARGUMENT. The error keeps ``status`` as given.
    """
    if isinstance(status, str):
        if status in _GRPC_CUT:
            return errors.StreamInterruptedError(
                message, provider=provider, model=model, status=status, retry_after=retry_after
            )
        http = _GRPC_AS_HTTP.get(status, 500)
    else:
        http = status
    cls: type[errors.ProviderError]
    if http in (400, 413, 422):
        if http == 413 or is_context_too_long(message):
            cls = errors.ContextTooLongError
        elif http == 400 and is_wrong_key(message):
            cls = errors.AuthenticationError
        else:
            cls = errors.InvalidRequestError
    elif http == 401:
        cls = errors.AuthenticationError
    elif http == 403:
        cls = errors.PermissionDeniedError
    elif http == 404:
        cls = errors.ModelNotFoundError
    elif http == 429:
        cls = errors.RateLimitedError
    elif http in (503, 529):
        cls = errors.OverloadedError
    elif http >= 500 or http == 408:
        cls = errors.ServerError
    else:
        cls = errors.InvalidRequestError
    return cls(message, provider=provider, model=model, status=status, retry_after=retry_after)


def is_context_too_long(message: str) -> bool:
    """Whether a provider's invalid-request message says the prompt does not fit."""
    return bool(_CONTEXT_TOO_LONG.search(message))


def is_wrong_key(message: str) -> bool:
    """Whether a provider's invalid-request message says the API key is wrong."""
    return bool(_WRONG_KEY.search(message))


# gRPC reports a failed or broken connection as UNAVAILABLE with a transport message in
# its details; the same code sent by a server ("the service is currently unavailable")
# is an overload. grpc core's wording, as the SDK surfaces it.
_GRPC_NO_CONNECTION = re.compile(
    r"failed to connect to all (addresses|subchannels)|DNS resolution failed"
    r"|Failed to connect to remote host|empty address list",
    re.IGNORECASE,
)
_GRPC_CONNECTION_CUT = re.compile(
    r"socket closed|connection reset|broken pipe|goaway|stream removed|endpoint clos"
    r"|transport closed|keepalive|connection timed out|connection aborted"
    r"|cancelling all calls|RST_STREAM",
    re.IGNORECASE,
)


def grpc_transport_failure(details: str) -> type[errors.StreamInterruptedError] | None:
    """The class for an UNAVAILABLE whose ``details`` are grpc's transport message:
    ``ConnectionFailedError`` (no connection), ``StreamInterruptedError`` (a cut), or
    None when the server itself said UNAVAILABLE."""
    if _GRPC_NO_CONNECTION.search(details):
        return errors.ConnectionFailedError
    if _GRPC_CONNECTION_CUT.search(details):
        return errors.StreamInterruptedError
    return None


def retry_after_from_headers(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


# OpenAI and xAI echo a masked form of a wrong key ("API key provided: sk-ab****wxyz").
_ECHOED_KEY = re.compile(r"(?<=API key provided: )\S+?(?=\.?(?:\s|$))")


def scrub(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` and without a provider's masked echo of a key."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "**********")
    return _ECHOED_KEY.sub("**********", text)


# -- the rule table -----------------------------------------------------------------------

Translator: TypeAlias = Callable[[Any, "ErrorScope"], errors.RxllmError | None]
"""Turns an exception into an rxllm error, or None to leave it to the next rule."""

Rule: TypeAlias = tuple[
    type[BaseException] | tuple[type[BaseException], ...],
    type[errors.RxllmError] | Translator,
]
"""A row of a table: exception type(s), then a translator or an rxllm error class."""


class ErrorRules:
    """A vendor's table of SDK exceptions → rxllm errors, followed by ``COMMON_RULES``.

    Args:
        vendor: The name messages use ("Anthropic", "xAI").
        rules: The vendor's rows, tried in order before the common ones. A row's target
            is a translator ``(error, scope) -> RxllmError | None`` (None: not mine, try
            the next row) or an rxllm error class (the message is the exception's text).
        connect_errors: More exception types that mean no connection could be made
            (the vendor's HTTP client's own), besides ``CONNECT_ERRORS``.
        timeout_errors: More exception types that mean a read timed out.
    """

    __slots__ = ("_table", "connect_errors", "rules", "timeout_errors", "vendor")

    def __init__(
        self,
        vendor: str,
        rules: Sequence[Rule] = (),
        *,
        connect_errors: tuple[type[BaseException], ...] = (),
        timeout_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.vendor = vendor
        self.rules: tuple[Rule, ...] = (*rules, *COMMON_RULES)
        self._table = tuple((types, _translator(target)) for types, target in self.rules)
        self.connect_errors = (*CONNECT_ERRORS, *connect_errors)
        self.timeout_errors = (*_TIMEOUTS, *timeout_errors)

    def scope(
        self,
        *,
        provider: str,
        model: str | None,
        secret: str | None = None,
        timeout: float | None = None,
    ) -> ErrorScope:
        """A context manager that translates what its body raises (one per stream)."""
        return ErrorScope(self, provider, model, secret, timeout)

    def translate(self, error: Exception, scope: ErrorScope) -> errors.RxllmError | None:
        """The rxllm error for ``error`` by the first row that claims it, or None."""
        for types, translator in self._table:
            if isinstance(error, types):
                mapped = translator(error, scope)
                if mapped is not None:
                    return mapped
        return None


def _translator(target: type[errors.RxllmError] | Translator) -> Translator:
    if not isinstance(target, type):
        return target
    cls: type[errors.RxllmError] = target

    def to_class(error: BaseException, scope: ErrorScope) -> errors.RxllmError:
        return cls(scope.describe(error), provider=scope.provider, model=scope.model)

    return to_class


class ErrorScope:
    """One stream's error context: what translators need, and the rules applied on exit.

    ``reading`` is set by the provider once the response is open and its events are
    being read. Before it, a ``ValueError`` or ``TypeError`` is a request the SDK
    refused; while reading, it (or a ``KeyError``, ``IndexError``, ``AttributeError``)
    is a malformed event.
    """

    __slots__ = ("model", "provider", "reading", "rules", "secret", "timeout")

    def __init__(
        self,
        rules: ErrorRules,
        provider: str,
        model: str | None,
        secret: str | None,
        timeout: float | None,
    ) -> None:
        self.rules = rules
        self.provider = provider
        self.model = model
        self.secret = secret
        self.timeout = timeout
        self.reading = False

    def __enter__(self) -> ErrorScope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Not Exception (cancellation, GeneratorExit) or already rxllm's: as it is.
        if not isinstance(exc, Exception) or isinstance(exc, errors.RxllmError):
            return
        mapped = self.rules.translate(exc, self)
        if mapped is not None:
            raise mapped from exc
        # No rule claims it: most likely a bug, in rxllm or in an SDK. It still reaches
        # the consumer as an rxllm error (every failure of a stream is one), not
        # retryable, with the original as its cause for the traceback.
        raise errors.ProviderError(
            f"unexpected failure in the {self.vendor} stream ({self.describe(exc)}); "
            "please report it",
            provider=self.provider,
            model=self.model,
        ) from exc

    # -- what translators build errors with -------------------------------------------------

    @property
    def vendor(self) -> str:
        return self.rules.vendor

    def scrub(self, text: str) -> str:
        """``text`` without the API key (or a provider's masked echo of it)."""
        return scrub(text, self.secret)

    def describe(self, error: BaseException | str) -> str:
        """``Type: message`` of ``error`` and of its root cause (or the text given),
        without the key."""
        if isinstance(error, str):
            return self.scrub(error)
        text = _describe(error)
        root = tuple(_chain(error))[-1]
        if root is not error and str(root):
            text = f"{text} ← {_describe(root)}"
        return self.scrub(text)

    def status_error(
        self, status: int | str, message: str, *, retry_after: float | None = None
    ) -> errors.ProviderError:
        """The rule book's class for ``status``, with a scrubbed message."""
        return error_for_status(
            status,
            self.scrub(message),
            provider=self.provider,
            model=self.model,
            retry_after=retry_after,
        )

    def connection_failed(
        self, error: BaseException | str, *, status: int | str | None = None
    ) -> errors.ConnectionFailedError:
        return errors.ConnectionFailedError(
            f"could not connect to the {self.vendor} API ({self.describe(error)}): "
            "check base_url and the network",
            provider=self.provider,
            model=self.model,
            status=status,
        )

    def interrupted(
        self, error: BaseException | str, *, status: int | str | None = None
    ) -> errors.StreamInterruptedError:
        when = "mid-stream" if self.reading else "before the response"
        return errors.StreamInterruptedError(
            f"the connection to the {self.vendor} API broke {when} ({self.describe(error)})",
            provider=self.provider,
            model=self.model,
            status=status,
        )

    def timed_out(
        self, error: BaseException | str, *, status: int | str | None = None
    ) -> errors.StreamInterruptedError:
        limit = f"for {self.timeout:g} s " if self.timeout is not None else ""
        return errors.StreamInterruptedError(
            f"the {self.vendor} API sent nothing {limit}and the read timed out "
            f"(the provider's timeout=; a stall with timeout(idle=) is a TimeoutError) "
            f"({self.describe(error)})",
            provider=self.provider,
            model=self.model,
            status=status,
        )

    def malformed(self, error: BaseException) -> errors.StreamInterruptedError:
        return errors.StreamInterruptedError(
            f"the {self.vendor} stream sent a malformed event ({self.describe(error)})",
            provider=self.provider,
            model=self.model,
        )

    def expect_event_stream(self, content_type: str | None, status: int | None = None) -> None:
        """Raise :class:`~rxllm.errors.UnexpectedResponseError` unless the response is a
        server-sent event stream (an HTML page from a proxy or a wrong ``base_url`` is not,
        whatever its status)."""
        kind = (content_type or "").split(";", 1)[0].strip().lower()
        if kind == "text/event-stream":
            return
        raise errors.UnexpectedResponseError(
            f"the server answered with {kind or 'no content type'} where the {self.vendor} "
            "API sends an event stream (text/event-stream): check base_url, or a proxy "
            "between you and the API",
            provider=self.provider,
            model=self.model,
            status=status,
        )

    def incomplete(self, missing: str) -> errors.StreamInterruptedError:
        """A stream that ended (cleanly, as far as the SDK knows) without ``missing``."""
        return errors.StreamInterruptedError(
            f"the {self.vendor} stream ended without {missing}: the reply is incomplete",
            provider=self.provider,
            model=self.model,
        )


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps (``__cause__``, else ``__context__``), without loops."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# -- the common rules ---------------------------------------------------------------------


def interrupted(error: BaseException, scope: ErrorScope) -> errors.RxllmError:
    """The connection broke: ``StreamInterruptedError``."""
    return scope.interrupted(error)


def malformed(error: BaseException, scope: ErrorScope) -> errors.RxllmError:
    """An event that does not parse or is not in the documented shape."""
    return scope.malformed(error)


def transport_failure(error: BaseException, scope: ErrorScope) -> errors.RxllmError:
    """A connection failure, told apart by what it wraps: no connection at all
    (``ConnectionFailedError``), a read timeout, or a reset or closed connection
    (``StreamInterruptedError``)."""
    chain = tuple(_chain(error))
    if any(isinstance(e, scope.rules.connect_errors) for e in chain):
        return scope.connection_failed(error)
    if any(isinstance(e, scope.rules.timeout_errors) for e in chain):
        return scope.timed_out(error)
    return scope.interrupted(error)


def refused_request(error: BaseException, scope: ErrorScope) -> errors.RxllmError | None:
    """Before the response: the SDK would not build or send the request (a bad option)."""
    if scope.reading:
        return None
    return errors.InvalidRequestError(
        f"the {scope.vendor} SDK refused the request ({scope.describe(error)})",
        provider=scope.provider,
        model=scope.model,
    )


def _malformed_while_reading(error: BaseException, scope: ErrorScope) -> errors.RxllmError | None:
    return scope.malformed(error) if scope.reading else None


COMMON_RULES: tuple[Rule, ...] = (
    (TRANSPORT_ERRORS, transport_failure),
    (httpx2.DecodingError, malformed),  # a body whose content-encoding does not decode
    ((TypeError, ValueError), refused_request),
    ((ValueError, LookupError, TypeError, AttributeError), _malformed_while_reading),
)
"""The rules every vendor shares, after its own table. A ``ValueError``, ``KeyError``
or ``TypeError`` is the SDK refusing the request before the response, a malformed event
while reading it (``json.JSONDecodeError`` is a ``ValueError``)."""


_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class ReadLimit:
    """The provider's ``timeout=`` (a limit per read) for one stream, paid once per stream.

    ``asyncio.timeout`` around every read arms and cancels a timer per message (about 5 µs
    each: a heap push and a cancel). This keeps at most one timer per stream: when it
    fires, it looks at the read in progress, if any, and cancels the reading task once that
    read has waited ``limit`` seconds, exactly what ``asyncio.timeout`` would have done;
    otherwise it sets itself for when the read in progress would be due. Time between
    reads (a consumer holding an event) never counts.

    Usage, around each read, in the task that reads::

        limit.reading()
        try:
            message = await call.read()
        except asyncio.CancelledError:
            limit.raise_if_expired()  # then: the limit, as builtins.TimeoutError
            raise
        finally:
            limit.done()
    """

    __slots__ = ("_handle", "_limit", "_loop", "_since", "_task", "expired")

    def __init__(self, limit: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        self._since: float | None = None
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.expired = False

    def reading(self) -> None:
        """A read starts now (in the current task)."""
        self._since = since = self._loop.time()
        if self._handle is None:
            self._task = asyncio.current_task()
            self._handle = self._loop.call_at(since + self._limit, self._check)

    def done(self) -> None:
        """The read ended (with a message, an error or a cancellation)."""
        self._since = None

    def raise_if_expired(self) -> None:
        """In an ``except CancelledError``: the limit's own cancellation becomes
        :class:`builtins.TimeoutError` (and the task is no longer marked cancelling)."""
        if self.expired:
            self.expired = False
            task = self._task
            if task is not None and task.cancelling():
                task.uncancel()
            raise builtins.TimeoutError(f"no message for {self._limit:g} s")

    def close(self) -> None:
        """Disarm (the stream ended)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None or self._task is None or self._task.done():
            return  # not reading: the next read arms it again
        due = since + self._limit
        # The loop runs a timer up to the clock's resolution early.
        if self._loop.time() + _CLOCK_RESOLUTION >= due:
            self.expired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)

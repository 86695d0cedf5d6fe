"""rxllm's errors: one tree, the same on every provider.

Errors travel on Rx's error channel (``on_error``), so ``retry``, ``catch``
and rxllm's own ``retry_on_interrupt`` can act on them by class::

    RxllmError
    ├── ConfigurationError              (bad settings, missing API key, unknown provider)
    ├── ProviderError                   (anything a provider said or did)
    │   ├── AuthenticationError         401 / UNAUTHENTICATED / a wrong-key 400
    │   ├── PermissionDeniedError       403 / PERMISSION_DENIED
    │   ├── InvalidRequestError         400 / 422 / INVALID_ARGUMENT
    │   │   └── ContextTooLongError     the prompt does not fit the context window
    │   ├── ModelNotFoundError          404 / NOT_FOUND
    │   ├── RateLimitedError            429 / RESOURCE_EXHAUSTED             (retryable)
    │   ├── OverloadedError             529 / 503 / UNAVAILABLE              (retryable)
    │   ├── ServerError                 5xx / INTERNAL                       (retryable)
    │   ├── UnexpectedResponseError     not the API's answer: an HTML page where
    │   │                               an event stream belongs (a wrong base URL)
    │   ├── ToolArgumentsError          a tool call's arguments are not a JSON object
    │   ├── StructuredOutputError       the reply does not fit the requested schema
    │   └── StreamInterruptedError      the stream broke, timed out reading  (retryable)
    │       │                           or ended before its final event
    │       └── ConnectionFailedError   no connection could be made at all   (retryable)
    ├── UnsupportedContentError         a content part the vendor cannot take (also a
    │                                   ValueError; raised before any request)
    ├── TimeoutError                    rxllm's ``timeout`` operator; ``phase`` is
    │                                   "first_token", "idle" or "total" (idle is retryable);
    │                                   also a builtin ``TimeoutError``
    └── CancelledError                  the stream was stopped

Every error carries ``provider``, ``model``, ``status`` (HTTP status or gRPC
code name), ``retryable``, ``retry_after`` (seconds, when the server said so:
``retry-after-ms``, ``retry-after`` or ``google.rpc.RetryInfo``, on any class;
never guessed) and the original exception as ``__cause__``. Messages never
contain API keys.

The rule book: the same failure is the same class on every provider (HTTP:
Anthropic, OpenAI, Gemini; gRPC: xAI). Each provider applies it through one
table (``rxllm/providers/_common.py`` holds the rules they share)::

    | failure                        | HTTP / gRPC             | error                  | retry |
    |--------------------------------|-------------------------|------------------------|-------|
    | no connection: refused, host   | UNAVAILABLE "failed to  | ConnectionFailedError  | yes   |
    |   unreachable, DNS failure,    |   connect to all ..."   |                        |       |
    |   connect timeout              |                         |                        |       |
    | connection reset or closed,    | UNAVAILABLE "Socket     | StreamInterruptedError | yes   |
    |   before the first byte or     |   closed", "GOAWAY", ... |                        |       |
    |   mid-body                     |                         |                        |       |
    | the provider's read timeout    | DEADLINE_EXCEEDED       | StreamInterruptedError | yes   |
    |   (its timeout=)               |                         |                        |       |
    | the stream ends without its    |                         | StreamInterruptedError | yes   |
    |   final event (message_stop;   |                         |                        |       |
    |   finish_reason and [DONE];    |                         |                        |       |
    |   finishReason; finish reason) |                         |                        |       |
    | malformed event: JSON that     |                         | StreamInterruptedError | yes   |
    |   does not parse or is not in  |                         |                        |       |
    |   the documented shape         |                         |                        |       |
    | the server cancelled the call  | CANCELLED               | StreamInterruptedError | yes   |
    | bad request, or the SDK        | 400, 422, other 4xx /   | InvalidRequestError    | no    |
    |   refused to send it           |   INVALID_ARGUMENT      |                        |       |
    | the prompt does not fit        | 413, 400 saying so      | ContextTooLongError    | no    |
    | wrong or missing key           | 401, 400 saying so /    | AuthenticationError    | no    |
    |                                |   UNAUTHENTICATED       |                        |       |
    | the key may not do this        | 403 / PERMISSION_DENIED | PermissionDeniedError  | no    |
    | no such model                  | 404 / NOT_FOUND         | ModelNotFoundError     | no    |
    | too many requests or tokens    | 429 /                   | RateLimitedError       | yes   |
    |                                |   RESOURCE_EXHAUSTED    |                        |       |
    | the provider is overloaded     | 503, 529 / UNAVAILABLE  | OverloadedError        | yes   |
    |                                |   (sent by the server)  |                        |       |
    | the provider failed            | 408, other 5xx /        | ServerError            | yes   |
    |                                |   INTERNAL, UNKNOWN,    |                        |       |
    |                                |   DATA_LOSS, ABORTED    |                        |       |
    | not an event stream: a 200     | 200 text/html, or any   | UnexpectedResponseError| no    |
    |   HTML page (a wrong base_url, |   content type but      |                        |       |
    |   a proxy, a captive portal)   |   text/event-stream     |                        |       |
    | an error event mid-stream      | its type or status      | the class of that      |       |
    |   (Anthropic's error event,    |                         |   status, as above     |       |
    |   {"error": ...} data, a gRPC  |                         |                        |       |
    |   status after chunks)         |                         |                        |       |
    | a tool call's arguments, once  |                         | ToolArgumentsError     | no    |
    |   complete, are not a JSON     |                         |                        |       |
    |   object (Gemini: MALFORMED_   |                         |                        |       |
    |   FUNCTION_CALL)               |                         |                        |       |
    | the reply asked for with       |                         | StructuredOutputError  | no    |
    |   response_format is not JSON  |                         |                        |       |
    |   that fits the schema         |                         |                        |       |
    | a message part the vendor      | (before any request)    | UnsupportedContentError| no    |
    |   cannot take                  |                         |                        |       |
    | rxllm's timeout operator fired |                         | TimeoutError           | idle  |
    | the stream was stopped         |                         | CancelledError         | no    |
    | bad settings, no API key       |                         | ConfigurationError     | no    |

"Saying so" is the message: "prompt is too long", "context length" and the like
for ContextTooLongError, "incorrect API key", "API key not valid" and the like
for AuthenticationError. gRPC's INVALID_ARGUMENT, FAILED_PRECONDITION and
OUT_OF_RANGE are a 400, UNIMPLEMENTED and ALREADY_EXISTS another 4xx. Output
streamed before a StreamInterruptedError was delivered; none was before a
ConnectionFailedError.

A failure no rule claims (a bug, in rxllm or an SDK) is still an rxllm error: a plain
``ProviderError``, not retryable, with the original exception as its cause.

``InterruptedError`` is the old name of StreamInterruptedError: it shadowed the
builtin without being one. It still works, with a DeprecationWarning, until the
next release.
"""

from __future__ import annotations

import builtins
import warnings
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

__all__ = [
    "AuthenticationError",
    "CancelledError",
    "ConfigurationError",
    "ConnectionFailedError",
    "ContextTooLongError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitedError",
    "RxllmError",
    "ServerError",
    "StreamInterruptedError",
    "StructuredOutputError",
    "TimeoutError",
    "ToolArgumentsError",
    "UnexpectedResponseError",
    "UnsupportedContentError",
    "TimeoutPhase",
]

TimeoutPhase: TypeAlias = Literal["first_token", "idle", "total"]


class RxllmError(Exception):
    """Base of every rxllm error."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        where = ":".join(p for p in (self.provider, self.model) if p)
        status = f"[{self.status}]" if self.status is not None else ""
        prefix = " ".join(part for part in (where, status) if part)
        return f"{prefix}: {self.message}" if prefix else self.message

    def __repr__(self) -> str:
        fields = [f"{self.message!r}"]
        for name in ("provider", "model", "status", "retry_after"):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keyword-only constructor: pickle (multiprocessing, Jupyter kernels) needs help.
        return (_rebuild, (type(self), self.message, self._state()))

    def _state(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "model": self.model,
            "status": self.status,
            "retry_after": self.retry_after,
            "retryable": self.retryable,
        }


def _rebuild(cls: type[RxllmError], message: str, state: dict[str, object]) -> RxllmError:
    error = cls.__new__(cls)
    RxllmError.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigurationError(RxllmError, ValueError):
    """Settings are wrong or missing: an unknown provider, a missing API key."""


class ProviderError(RxllmError):
    """Something a provider said or did."""


class AuthenticationError(ProviderError):
    """The API key was missing, wrong or revoked."""


class PermissionDeniedError(ProviderError):
    """The key is valid but may not use this model or feature."""


class InvalidRequestError(ProviderError):
    """The provider (or its SDK, before sending) rejected the request as malformed."""


class ContextTooLongError(InvalidRequestError):
    """The prompt (plus max tokens) does not fit the model's context window."""


class ModelNotFoundError(ProviderError):
    """The model id does not exist for this provider (or this key)."""


class RateLimitedError(ProviderError):
    """Too many requests or tokens; wait ``retry_after`` seconds when given."""

    retryable = True


class OverloadedError(ProviderError):
    """The provider is overloaded; try again later."""

    retryable = True


class ServerError(ProviderError):
    """The provider failed internally."""

    retryable = True


class UnexpectedResponseError(ProviderError):
    """The server answered, but not as this API does: an HTML page or another content
    type where an event stream belongs. Usually a ``base_url`` that points at the wrong
    place (a web page, a missing ``/v1``), a proxy or a captive portal; retrying the
    same request will not help.
    """


class ToolArgumentsError(ProviderError):
    """A tool call's arguments, complete, are not a JSON object. ``tool_name`` and
    ``call_id`` say which call, ``arguments`` holds the text the model sent."""

    def __init__(
        self,
        message: str,
        *,
        tool_name: str = "?",
        call_id: str | None = None,
        arguments: str = "",
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.tool_name = tool_name
        self.call_id = call_id
        self.arguments = arguments

    def _state(self) -> dict[str, object]:
        return {
            **super()._state(),
            "tool_name": self.tool_name,
            "call_id": self.call_id,
            "arguments": self.arguments,
        }


class StructuredOutputError(ProviderError):
    """The reply asked for with ``response_format=`` is not valid JSON or does not fit
    the schema. ``raw_text`` is the whole reply (already streamed as tokens too);
    ``errors`` the validation errors, when the JSON parsed."""

    def __init__(
        self,
        message: str,
        *,
        raw_text: str = "",
        errors: list[dict[str, Any]] | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.raw_text = raw_text
        self.errors = errors or []

    def _state(self) -> dict[str, object]:
        return {**super()._state(), "raw_text": self.raw_text, "errors": self.errors}


class StreamInterruptedError(ProviderError):
    """The stream broke, timed out reading, sent a malformed event, or ended early.

    The connection was reset or closed (before the first byte or mid-body), the
    provider's read timeout (its ``timeout=``) passed, an event could not be read, or
    the stream ended without its provider's final event. The SDKs themselves report
    success when a stream is cut cleanly; rxllm does not. Output already streamed
    was delivered before this error.

    Example:
        >>> try:
        ...     text = await provider.generate("Hi")
        ... except rxllm.errors.StreamInterruptedError:
        ...     ...  # or let retry_on_interrupt() resume it
    """

    retryable = True


class ConnectionFailedError(StreamInterruptedError):
    """No connection could be made at all: refused, unreachable host, DNS, connect timeout.

    Nothing was sent or streamed; check ``base_url`` and the network.
    """


class TimeoutError(RxllmError, builtins.TimeoutError):  # noqa: A001 - and a builtin one too
    """rxllm's ``timeout`` operator fired. ``phase`` says which limit.

    It is also a builtin :class:`TimeoutError`, so ``except TimeoutError:`` catches it.
    """

    def __init__(
        self,
        message: str,
        *,
        phase: TimeoutPhase,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, retryable=phase == "idle")
        self.phase: TimeoutPhase = phase

    def _state(self) -> dict[str, object]:
        return {**super()._state(), "phase": self.phase}


class UnsupportedContentError(RxllmError, ValueError):
    """A message part the vendor cannot take (a PDF for a vendor without documents, an
    image URL a vendor will not fetch): raised before any request, naming both."""


class CancelledError(RxllmError):
    """The stream was stopped before it finished."""


# The old name of StreamInterruptedError, which shadowed the builtin InterruptedError
# without being one: kept for one release, with a warning on use.
_DEPRECATED = {"InterruptedError": ("StreamInterruptedError", StreamInterruptedError)}

if TYPE_CHECKING:
    InterruptedError = StreamInterruptedError  # noqa: A001 - deprecated alias
else:

    def __getattr__(name: str) -> object:
        if name in _DEPRECATED:
            new_name, cls = _DEPRECATED[name]
            warnings.warn(
                f"rxllm.errors.{name} is deprecated and will be removed in the next release: "
                f"use rxllm.errors.{new_name}",
                DeprecationWarning,
                stacklevel=2,
            )
            return cls
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

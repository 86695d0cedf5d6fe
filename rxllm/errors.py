"""rxllm's errors: one tree, the same on every provider.

Errors travel on Rx's error channel (``on_error``), so ``retry``, ``catch``
and rxllm's own ``retry_on_interrupt`` can act on them by class::

    RxllmError
    ├── ConfigurationError          (bad settings, missing API key, unknown provider)
    ├── ProviderError               (anything a provider said or did)
    │   ├── AuthenticationError     401 / 400 API_KEY_INVALID / UNAUTHENTICATED
    │   ├── PermissionDeniedError   403 / PERMISSION_DENIED
    │   ├── InvalidRequestError     400 / 422 / INVALID_ARGUMENT
    │   │   └── ContextTooLongError the prompt does not fit the context window
    │   ├── ModelNotFoundError      404 / NOT_FOUND
    │   ├── RateLimitedError        429 / RESOURCE_EXHAUSTED       (retryable)
    │   ├── OverloadedError         529 / 503 / UNAVAILABLE        (retryable)
    │   ├── ServerError             5xx / INTERNAL                 (retryable)
    │   └── InterruptedError        the stream dropped or ended    (retryable)
    │                               before its final event
    ├── TimeoutError                rxllm's ``timeout`` operator; ``phase`` is
    │                               "first_token", "idle" or "total" (idle is retryable)
    └── CancelledError              the stream was stopped

Every error carries ``provider``, ``model``, ``status`` (HTTP status or gRPC
code name), ``retryable``, ``retry_after`` (seconds, when the server said) and
the original exception as ``__cause__``. Messages never contain API keys.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

__all__ = [
    "AuthenticationError",
    "CancelledError",
    "ConfigurationError",
    "ContextTooLongError",
    "InterruptedError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitedError",
    "RxllmError",
    "ServerError",
    "TimeoutError",
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
    """The provider rejected the request as malformed."""


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


class InterruptedError(ProviderError):  # noqa: A001 - rxllm.errors.InterruptedError, by design
    """The stream dropped, or ended without its provider's final event.

    The SDKs themselves report success when a stream is cut cleanly; rxllm
    does not. Output already streamed was delivered before this error.
    """

    retryable = True


class TimeoutError(RxllmError):  # noqa: A001 - rxllm.errors.TimeoutError, by design
    """rxllm's ``timeout`` operator fired. ``phase`` says which limit."""

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


class CancelledError(RxllmError):
    """The stream was stopped before it finished."""

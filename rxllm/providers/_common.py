"""What the vendor modules share: status → error class, retry-after parsing, key scrubbing."""

from __future__ import annotations

import email.utils
import re
import ssl
import time
from collections.abc import Mapping

import anyio
import httpx2

from .. import errors

__all__ = [
    "TRANSPORT_ERRORS",
    "error_for_status",
    "is_context_too_long",
    "retry_after_from_headers",
    "scrub",
]

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx2.TransportError,
    httpx2.StreamError,
    ssl.SSLError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    OSError,
)
"""What a connection that fails or drops raises below the SDKs' own error types, for
the HTTP providers to report as ``InterruptedError``: httpx2's transport and stream
errors, and what escapes its mapping (TLS, anyio streams, plain socket errors)."""

_CONTEXT_TOO_LONG = re.compile(
    r"prompt is too long|context length|context window|maximum context|too many tokens"
    r"|exceeds the maximum number of tokens|input token count|maximum prompt length",
    re.IGNORECASE,
)


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str | None,
    retry_after: float | None = None,
) -> errors.ProviderError:
    """The rxllm error for an HTTP status (Anthropic 529 and the usual 4xx/5xx)."""
    cls: type[errors.ProviderError]
    if status in (400, 413, 422):
        too_long = status == 413 or is_context_too_long(message)
        cls = errors.ContextTooLongError if too_long else errors.InvalidRequestError
    elif status == 401:
        cls = errors.AuthenticationError
    elif status == 403:
        cls = errors.PermissionDeniedError
    elif status == 404:
        cls = errors.ModelNotFoundError
    elif status == 429:
        cls = errors.RateLimitedError
    elif status in (503, 529):
        cls = errors.OverloadedError
    elif status >= 500 or status == 408:
        cls = errors.ServerError
    else:
        cls = errors.InvalidRequestError
    return cls(message, provider=provider, model=model, status=status, retry_after=retry_after)


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


def is_context_too_long(message: str) -> bool:
    """Whether a provider's invalid-request message says the prompt does not fit."""
    return bool(_CONTEXT_TOO_LONG.search(message))

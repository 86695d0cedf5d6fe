"""API keys stay secret: checked before use, and masked in every log record.

:func:`check_api_key` refuses a key that could not travel in an HTTP header or a
gRPC metadata value as given (surrounding whitespace, a newline, a control or
non-ASCII character): sent anyway, it fails later as a confusing "connection
error" whose cause quotes the header with the key in it, or, worse, injects a
header. The message says what is wrong and where, never the key.

:func:`protect` remembers a key in use and masks it in every record of the
loggers of rxllm and of the SDKs under it, so a DEBUG log of a request (the SDKs
log headers, URLs and failures) never shows a key rxllm was given.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["SDK_LOGGERS", "check_api_key", "protect", "redact"]

MASK = "**********"

SDK_LOGGERS = (
    "rxllm",
    "anthropic",
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "google_genai",
    "google.genai",
    "aiohttp",
    "grpc",
    "xai_sdk",
)
"""The loggers a request's details can reach: rxllm's, the SDKs' and their transports'."""

_keys: set[str] = set()
_lock = threading.Lock()
_installed = False


def check_api_key(key: str, *, provider: str) -> None:
    """Raise ``ValueError`` (never quoting the key) unless ``key`` can be sent as is.

    Example:
        >>> check_api_key("sk-abc\\n", provider="openai")
        Traceback (most recent call last):
        ValueError: the API key for openai ends with whitespace ...
    """
    if not key.strip():
        raise ValueError(f"the API key for {provider} is blank")
    if key != key.strip():
        where = "starts" if key[0].isspace() else "ends"
        raise ValueError(
            f"the API key for {provider} {where} with whitespace (a stray newline from a "
            "file or a shell?): remove it"
        )
    for position, char in enumerate(key):
        if not "\x21" <= char <= "\x7e":
            kind = "a control character" if char.isascii() else "a non-ASCII character"
            raise ValueError(
                f"the API key for {provider} has {kind} at position {position}: API keys "
                "are printable ASCII; check how it was set"
            )


def redact(text: str) -> str:
    """``text`` with every key rxllm was given masked."""
    with _lock:
        keys = sorted(_keys, key=len, reverse=True)
    for key in keys:
        if key in text:
            text = text.replace(key, MASK)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not format: leave the record to logging
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))


def protect(key: str) -> None:
    """Remember ``key`` as a secret to mask in log records (the first call installs it).

    Records are masked as they are made, by a log record factory wrapped around
    the current one, for rxllm's and the SDKs' loggers (:data:`SDK_LOGGERS`): so
    whatever handlers exist now or later, none sees the key.
    """
    global _installed
    if len(key) < 8:  # too short to mask without masking ordinary words
        return
    with _lock:
        _keys.add(key)
        if _installed:
            return
        _installed = True
        previous = logging.getLogRecordFactory()

    def make_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name in SDK_LOGGERS or record.name.startswith(_CHILDREN):
            _redact_record(record)
        return record

    logging.setLogRecordFactory(make_record)


_CHILDREN = tuple(logger + "." for logger in SDK_LOGGERS)

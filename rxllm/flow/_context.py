"""``Context``: the key-value state of one flow run, whose changes are an Observable."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, NamedTuple

from pydantic import SecretBytes, SecretStr
from reactivex import Observable
from reactivex.subject import Subject

from ..redaction import redact

__all__ = ["Context", "ContextChange"]

_SECRET_KEY = re.compile(r"(^|_)(api_?key|secret|password|credentials?)$", re.IGNORECASE)
"""Key names that would hold a secret: refused, whatever the value."""


class ContextChange(NamedTuple):
    """One change of a :class:`Context`: ``old`` is ``None`` for a new key, ``new`` for a
    deleted one."""

    key: str
    old: Any
    new: Any


class Context(MutableMapping[str, Any]):
    """The state a flow's steps share: a mutable mapping whose changes are an Observable.

    Steps read their input from it and write their output into it (an
    :class:`~rxllm.flow.LLMStreamStep` writes ``partial_response`` as tokens
    arrive), so a UI or a notebook can watch a run by subscribing to
    :attr:`changes`: one :class:`ContextChange` ``(key, old, new)`` per change, in
    the order the changes were made, on the thread that made them (every assignment
    is one, also of an equal value).

    It is thread-safe: a flow may be aborted, or its context read, from any thread.

    Secrets never go in: a ``SecretStr`` value, a key named like one (``api_key``,
    ``openai_api_key``, ``secret``, ``password``) or a string that contains an API key
    rxllm was given raise ``ValueError``. Credentials belong to the providers
    (``rxllm.provider(...)``), which keep them out of every repr and log.

    Example:
        >>> context = Context(prompt="Plan a CLI")
        >>> context.changes.subscribe(lambda c: print(c.key, len(c.new or "")))
        >>> context["partial_response"] = "Step 1"
        partial_response 6
        >>> context.to_json()
        '{"prompt": "Plan a CLI", "partial_response": "Step 1"}'
    """

    def __init__(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self._values: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._changes: Subject[ContextChange] = Subject()
        for key, value in {**(values or {}), **more}.items():
            _check(key, value)
            self._values[key] = value

    @property
    def changes(self) -> Observable[ContextChange]:
        """Every change from now on (hot: earlier changes are not replayed)."""
        return self._changes

    def __getitem__(self, key: str) -> Any:
        with self._lock:
            return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        _check(key, value)
        with self._lock:
            old = self._values.get(key)
            self._values[key] = value
            # Told under the lock, so subscribers see changes in the order they were made.
            self._changes.on_next(ContextChange(key, old, value))

    def __delitem__(self, key: str) -> None:
        with self._lock:
            old = self._values.pop(key)
            self._changes.on_next(ContextChange(key, old, None))

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def snapshot(self) -> dict[str, Any]:
        """A shallow copy of the values now."""
        with self._lock:
            return dict(self._values)

    def to_json(self, **dumps: Any) -> str:
        """The values as JSON: dataclasses (``Usage``) as objects, enums as their values,
        anything else JSON cannot take as its ``str``."""
        return json.dumps(self.snapshot(), default=_jsonable, **dumps)

    def __repr__(self) -> str:
        return f"Context({', '.join(self.snapshot())})"


def _check(key: str, value: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"Context keys are strings, got {key!r}")
    if isinstance(value, SecretStr | SecretBytes) or _SECRET_KEY.search(key):
        raise ValueError(
            f"{key!r}: secrets are never kept in a flow's Context; give API keys to "
            "rxllm.provider(...) or the environment"
        )
    if isinstance(value, str) and redact(value) != value:
        raise ValueError(f"{key!r}: the value contains an API key; it is not kept in a Context")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    return str(value)

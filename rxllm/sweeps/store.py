"""The sweep's embedded store: one SQLite file, one row per (request, model).

SQLite from the standard library is the default because a sweep must survive
the process that runs it (a kernel restart, Ctrl-C, ``kill -9``) with nothing
to install or start: every finished row is committed at once, in WAL mode, so
a crash loses at most the rows in flight and a reader (``rxllm sweep
--summary``, a notebook) can look while a sweep writes. Rows are keyed by
:func:`row_key`, a hash of the request and the model, so running the same
sweep again finds what is done.

The store holds what a row produced and how (text, reasoning, usage, cost,
TTFT, tokens/s, finish reason, error class and message, timestamps) and the
request that produced it; never an API key: requests carry none, and error
messages pass through :func:`rxllm.redaction.redact` before they are written.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..request import StreamRequest

__all__ = ["COLUMNS", "SweepStore", "request_json", "row_key"]

COLUMNS: tuple[tuple[str, str], ...] = (
    ("key", "TEXT PRIMARY KEY"),
    ("prompt_index", "INTEGER"),
    ("prompt", "TEXT"),
    ("model", "TEXT"),
    ("provider", "TEXT"),
    ("status", "TEXT"),
    ("text", "TEXT"),
    ("reasoning", "TEXT"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("reasoning_tokens", "INTEGER"),
    ("total_tokens", "INTEGER"),
    ("cost_usd", "REAL"),
    ("usage_estimated", "INTEGER"),
    ("ttft_s", "REAL"),
    ("tokens_per_s", "REAL"),
    ("elapsed_s", "REAL"),
    ("tokens", "INTEGER"),
    ("finish_reason", "TEXT"),
    ("error_class", "TEXT"),
    ("error_message", "TEXT"),
    ("attempts", "INTEGER"),
    ("worker", "TEXT"),
    ("started_at", "TEXT"),
    ("finished_at", "TEXT"),
    ("request", "TEXT"),
)
"""The columns of the ``rows`` table, in order. ``status`` is ``"ok"`` or ``"error"``."""

_NAMES = tuple(name for name, _ in COLUMNS)
_SCHEMA_VERSION = 1


def _canonical(value: Any) -> Any:
    """A JSON-able form of a request's value that is the same for the same request."""
    if isinstance(value, enum.Enum):
        return _canonical(value.value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        return {"sha256": hashlib.sha256(value).hexdigest(), "bytes": len(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_canonical(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    if isinstance(value, type):  # a pydantic model class given as a response format
        schema = getattr(value, "model_json_schema", None)
        return schema() if callable(schema) else f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def request_json(request: StreamRequest) -> str:
    """The request as canonical JSON (sorted keys), without its model."""
    fields = _canonical(request)
    fields.pop("model", None)
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def row_key(request: StreamRequest, model: str) -> str:
    """The row's identity: a SHA-256 of ``"provider:model"`` and the canonical request.

    The same prompt and fields sent to the same model (knobs included) is the
    same row; anything else that changes the request (``max_tokens``, the system
    prompt, a tool) is a different row. Where the request goes (base URL, key)
    is not part of it.
    """
    text = json.dumps({"model": model, "request": request_json(request)}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SweepStore:
    """The rows of one or more sweeps in a SQLite file (``":memory:"`` for none).

    Thread-safe: one connection behind a lock (writes are one small commit each).

    Example:
        >>> store = SweepStore("results.sqlite")
        >>> len(store.rows()), store.spent()
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ValueError(f"no such directory for the sweep store: {parent}")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            # A commit is durable against the process dying (what resuming needs) without
            # an fsync per row; only a power cut may lose the last rows.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
            self._db.execute(f"CREATE TABLE IF NOT EXISTS rows ({columns})")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(_SCHEMA_VERSION),)
            )

    def write(self, row: Mapping[str, Any]) -> None:
        """Insert or replace one row, committed at once (a retried failure replaces itself)."""
        values = tuple(row.get(name) for name in _NAMES)
        marks = ", ".join("?" for _ in _NAMES)
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO rows ({', '.join(_NAMES)}) VALUES ({marks})", values
            )

    def statuses(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """``{key: status}`` of the stored rows (of ``keys`` only, when given)."""
        with self._lock:
            found = {r[0]: r[1] for r in self._db.execute("SELECT key, status FROM rows")}
        if keys is None:
            return found
        return {k: found[k] for k in keys if k in found}

    def rows(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The stored rows as dicts (those of ``keys``, in that order, when given)."""
        with self._lock:
            every = [dict(r) for r in self._db.execute("SELECT * FROM rows ORDER BY rowid")]
        if keys is None:
            return every
        by_key = {row["key"]: row for row in every}
        return [by_key[k] for k in keys if k in by_key]

    def spent(self, keys: Iterable[str] | None = None) -> float:
        """Dollars spent on the stored rows (of ``keys`` only, when given)."""
        return sum(row["cost_usd"] or 0.0 for row in self.rows(keys))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SweepStore({self.path!r})"

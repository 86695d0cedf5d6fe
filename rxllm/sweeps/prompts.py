"""A sweep's prompts, from wherever a data set lives.

Accepted: an iterable of prompt strings, :class:`~rxllm.request.StreamRequest`\\ s,
or dicts of request fields (``{"prompt": ..., "system": ..., "max_tokens": ...}``,
``"messages"`` as ``[{"role": ..., "content": ...}]``), which includes a pandas
column; or the path of a JSONL file (one JSON string or object a line), a CSV
file or a Parquet file (a ``prompt`` column, or the only column; Parquet reads
through pandas). Keys that are not request fields (an ``id``, an expected
answer) are ignored, so a data set's own columns may stay.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..request import Message, StreamRequest

__all__ = ["Prompt", "load_prompts"]

Prompt = str | StreamRequest | dict[str, Any]
_FIELDS = frozenset(f.name for f in dataclasses.fields(StreamRequest)) - {"model"}


def _from_mapping(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    fields = {k: v for k, v in entry.items() if k in _FIELDS and v is not None}
    if "messages" in fields:
        fields["messages"] = tuple(
            m if isinstance(m, Message) else Message(**m) for m in fields["messages"]
        )
    if "stop" in fields and isinstance(fields["stop"], list):
        fields["stop"] = tuple(fields["stop"])
    if not fields.get("prompt") and not fields.get("messages"):
        raise ValueError(f"{where}: needs a 'prompt' or 'messages' (got keys {sorted(entry)})")
    return fields


def _jsonl(path: Path) -> list[Prompt]:
    found: list[Prompt] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, dict):
                found.append(_from_mapping(value, f"{path}:{number}"))
            else:
                raise ValueError(f"{path}:{number}: expected a string or an object")
    return found


def _csv(path: Path) -> list[Prompt]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "prompt" not in columns and len(columns) != 1:
            raise ValueError(f"{path}: needs a 'prompt' column (columns: {columns})")
        column = "prompt" if "prompt" in columns else columns[0]
        return [row[column] for row in reader]


def _parquet(path: Path) -> list[Prompt]:
    try:
        import pandas as pd  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading Parquet prompts needs pandas and pyarrow") from error
    frame = pd.read_parquet(path)
    if "prompt" not in frame.columns and len(frame.columns) != 1:
        raise ValueError(f"{path}: needs a 'prompt' column (columns: {list(frame.columns)})")
    column = "prompt" if "prompt" in frame.columns else frame.columns[0]
    return [str(v) for v in frame[column]]


def load_prompts(source: str | os.PathLike[str] | Iterable[Any]) -> list[Prompt]:
    """The prompts of ``source``, checked (a bad entry raises ``ValueError`` naming it).

    A ``str`` is a file's path: a sweep's prompts are a list, even of one.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"no prompts file {str(path)!r} (a sweep takes a list of prompts, or the "
                "path of a .jsonl, .csv or .parquet file)"
            )
        readers = {".jsonl": _jsonl, ".ndjson": _jsonl, ".csv": _csv, ".parquet": _parquet}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise ValueError(f"{path}: prompts files are .jsonl, .csv or .parquet")
        prompts = reader(path)
    else:
        prompts = []
        for number, entry in enumerate(source):
            if isinstance(entry, str | StreamRequest):
                prompts.append(entry)
            elif isinstance(entry, Mapping):
                prompts.append(_from_mapping(entry, f"prompt {number}"))
            else:
                raise ValueError(
                    f"prompt {number} is a {type(entry).__name__}: give strings, "
                    "StreamRequests or dicts of request fields"
                )
    if not prompts:
        raise ValueError("a sweep needs at least one prompt")
    return prompts

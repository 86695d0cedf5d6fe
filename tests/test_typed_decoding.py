"""The typed fast path reads a chunk only when it is plain text, and then reads it exactly as
the general ``json.loads`` reading would: checked on every event of every real capture and
on the shapes compatible servers send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rxllm.providers._sse import SSEFramer
from rxllm.providers._typed import TypedError, anthropic_delta, openai_chunk

FIXTURES = Path(__file__).parent / "fixtures"


def _events(vendor: str) -> list[tuple[str, bytes, bytes | None]]:
    out = []
    for path in sorted((FIXTURES / vendor).glob("*.sse")):
        framer = SSEFramer()
        out += [(path.name, data, name) for name, data in framer.feed(path.read_bytes())]
    return out


def _openai_text(chunk: dict[str, Any]) -> str | None:
    """What the general reading makes a plain text chunk of (``None``: not plain text)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or len(choices) != 1:
        return None
    if chunk.get("usage") is not None or "error" in chunk:
        return None
    choice = choices[0]
    delta = choice.get("delta")
    if choice.get("finish_reason") is not None or not isinstance(delta, dict):
        return None
    if set(delta) - {"content", "role", "tool_calls", "reasoning_content", "reasoning", "refusal"}:
        return None
    if any(delta.get(k) is not None for k in ("tool_calls", "reasoning_content", "reasoning")):
        return None
    if delta.get("refusal") is not None:
        return None
    content = delta.get("content")
    return content if isinstance(content, str) and content else None  # 7: not text, declined


def _typed(read: Any, data: bytes) -> Any:
    try:
        return read(data)
    except TypedError:
        return None


OPENAI = [(n, d) for n, d, _ in _events("openai") if not d.startswith(b"[DONE]")]
COMPATIBLE = [
    b'{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}',
    b'{"choices":[{"delta":{"content":"Hi","reasoning_content":null,"tool_calls":null}}]}',
    b'{"choices":[{"delta":{"content":"Hi","audio":{"id":"a"}}}]}',
    b'{"choices":[{"delta":{"content":"Hi","tool_calls":[{"index":0}]}}]}',
    b'{"choices":[{"delta":{"content":"Hi","refusal":"no"}}]}',
    b'{"choices":[{"delta":{"content":"Hi"},"finish_reason":"stop"}]}',
    b'{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}',
    b'{"choices":[{"delta":{"content":"Hi"}}],"usage":{"prompt_tokens":1}}',
    b'{"choices":[{"delta":{"content":""}}]}',
    b'{"choices":[{"delta":{"content":7}}]}',
    b'{"error":{"message":"boom"}}',
    b"not json",
]


@pytest.mark.parametrize(
    "data", [d for _, d in OPENAI] + COMPATIBLE, ids=[n for n, _ in OPENAI] + ["compatible"] * 12
)
def test_openai_typed_reading_is_the_general_one_or_declines(data: bytes) -> None:
    try:
        expected = _openai_text(json.loads(data))
    except ValueError:
        expected = None
    assert _typed(openai_chunk, data) == expected


def test_the_openai_captures_are_mostly_read_typed() -> None:
    text = [d for _, d in OPENAI if _typed(openai_chunk, d) is not None]
    assert len(text) > len(OPENAI) // 2  # the fast path is the common path


ANTHROPIC = [(n, d) for n, d, name in _events("anthropic") if name == b"content_block_delta"]


@pytest.mark.parametrize("data", [d for _, d in ANTHROPIC], ids=[n for n, _ in ANTHROPIC])
def test_anthropic_typed_reading_is_the_general_one_or_declines(data: bytes) -> None:
    delta = json.loads(data)["delta"]
    typed = _typed(anthropic_delta, data)
    if delta["type"] == "text_delta":
        assert typed == (False, delta["text"])
    elif delta["type"] == "thinking_delta":
        assert typed == (True, delta["thinking"])
    else:
        assert typed is None

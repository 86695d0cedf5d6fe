"""Typed decoding of the one event shape that dominates a stream: a piece of text.

Why: ``json.loads`` builds a dict for every key of every chunk (ids, timestamps,
fingerprints, ``logprobs: null``) only for the provider to read one string. ``msgspec``
decodes into a struct of the few fields rxllm reads and skips the rest without building
it; ``bench/`` measured 0.6 µs per OpenAI chunk against 4.5 µs for ``json.loads``, and
0.34 µs against 3.0 µs for an Anthropic delta.

These structs are a *fast path*, never the only reading: a provider takes the typed
result only when it is the plain text case (one choice, a text delta and nothing else
the provider acts on); anything else, an unexpected type included
(``msgspec.ValidationError``) or a payload that does not parse, goes through the general
``json.loads`` reading as before, so a new field or a new shape never breaks a stream.
Fields rxllm only needs to see the *presence* of are kept as ``msgspec.Raw`` (not
decoded); ``NULL`` is their default and what a JSON ``null`` decodes to.

The structs are ``gc=False`` (untracked by the garbage collector: cheaper to make and
free, ~0.07 µs a chunk): they hold strings, numbers, raw JSON and one another, never a
cycle.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "NULL",
    "TypedError",
    "anthropic_delta",
    "decode_raw",
    "gemini_chunk",
    "openai_chunk",
    "openai_text_chunk",
]

NULL = msgspec.Raw(b"null")
"""An absent (or JSON ``null``) field kept raw."""

TypedError = msgspec.MsgspecError
"""A payload the typed reading does not fit (bad JSON or another shape): read it the
general way."""


class _OpenAITextDelta(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    # Only text: a field rxllm acts on (tool_calls, reasoning, refusal) must be absent or
    # null, and a field it does not know fails the decoding (read in full, then).
    content: str = ""
    role: str | None = None
    tool_calls: None = None
    reasoning_content: None = None
    reasoning: None = None
    refusal: None = None


class _OpenAITextChoice(msgspec.Struct, gc=False):
    delta: _OpenAITextDelta
    finish_reason: None = None


class OpenAITextChunk(msgspec.Struct, gc=False):
    """A Chat Completions chunk that is one piece of text and nothing else: one choice,
    no finish reason, no usage, no error. The schema does the checks, in C; any other
    chunk fails to decode (``msgspec.ValidationError``)."""

    choices: tuple[_OpenAITextChoice]
    usage: None = None
    error: None = None


openai_text_chunk = msgspec.json.Decoder(OpenAITextChunk).decode
"""Decode a chunk that is only text (:data:`TypedError` for any other): its text is
``.choices[0].delta.content`` (empty: read the chunk in full). The provider calls it
inline, as :func:`openai_chunk` shows."""


def openai_chunk(data: bytes) -> str | None:
    """The chunk's text when it is only text (else ``None`` or :data:`TypedError`: read it
    in full)."""
    return openai_text_chunk(data).choices[0].delta.content or None


class _AnthropicDelta(msgspec.Struct, gc=False):
    type: str
    text: str | None = None
    thinking: str | None = None


class AnthropicDelta(msgspec.Struct, gc=False):
    """A ``content_block_delta`` event, as far as its text or thinking goes."""

    delta: _AnthropicDelta


_ANTHROPIC = msgspec.json.Decoder(AnthropicDelta).decode


def anthropic_delta(data: bytes) -> tuple[bool, str] | None:
    """``(is_thinking, text)`` of a text or thinking delta, else ``None`` (read it in full)."""
    delta = _ANTHROPIC(data).delta
    kind = delta.type
    if kind == "text_delta" and delta.text is not None:
        return False, delta.text
    if kind == "thinking_delta" and delta.thinking is not None:
        return True, delta.thinking
    return None


class _GeminiPart(msgspec.Struct, gc=False):
    text: str | None = None
    thought: bool | None = None
    functionCall: msgspec.Raw = NULL


class _GeminiContent(msgspec.Struct, gc=False):
    parts: list[_GeminiPart] = []


class _GeminiCandidate(msgspec.Struct, gc=False):
    content: _GeminiContent | None = None
    finishReason: msgspec.Raw = NULL


class GeminiChunk(msgspec.Struct, gc=False):
    """A ``GenerateContentResponse`` event, as far as its text goes."""

    candidates: list[_GeminiCandidate] = []
    usageMetadata: msgspec.Raw = NULL
    responseId: str | None = None
    modelVersion: str | None = None
    error: msgspec.Raw = NULL


_GEMINI = msgspec.json.Decoder(GeminiChunk).decode


def gemini_chunk(data: bytes) -> GeminiChunk | None:
    """The event when it carries only text and thought parts (no call, no finish, no
    error), else ``None`` (read it in full)."""
    chunk = _GEMINI(data)
    candidates = chunk.candidates
    if len(candidates) != 1 or chunk.error != NULL or candidates[0].finishReason != NULL:
        return None
    content = candidates[0].content
    if content is not None:
        for part in content.parts:
            if part.functionCall != NULL:
                return None
    return chunk


def decode_raw(raw: msgspec.Raw) -> object:
    """A field kept raw, decoded (the general way)."""
    return msgspec.json.decode(raw)

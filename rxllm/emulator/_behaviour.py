"""Per-request knobs of the emulator: pacing, content and injected faults.

Knobs come, in increasing precedence, from the server's defaults
(``Emulator(ttft=..., tps=...)``), then a suffix on the model name after
``~`` (works through every SDK, including gRPC), then the
``x-rxllm-emulator`` request header / gRPC metadata. Both use the same
syntax, comma-separated ``key=value`` pairs::

    claude-sonnet-4-5~fault=drop,after=5
    x-rxllm-emulator: ttft=0.2,tps=40,chunk=2

=============  ===============================================================
key            meaning
=============  ===============================================================
ttft           seconds before the first content event (default 0)
tps            content tokens per second; 0 = as fast as possible (default)
chunk          tokens per content event (default 1)
words          length of the generated reply in words (default 60)
reasoning      ``on`` / ``off``: force reasoning text; default follows the request
reply          a scripted reply instead of the generated one (URL-quoted)
fault          one of :data:`FAULTS`
after          for mid-stream faults: content events sent before it (default 3)
retry_after    seconds for ``rate_limited`` (default 1)
times          apply the fault to the first N matching requests, then succeed
tool_calls     tool calls per round when the request offers tools (default 1;
               more are parallel calls, to the offered tools in turn)
tool_rounds    rounds of tool calls before the model answers in text (default
               1; 0 answers at once). ``tool_choice`` "required" or a tool's
               name always calls; "none" never does
args           the calls' arguments as JSON text (URL-quoted) instead of a
               value generated from the tool's schema
=============  ===============================================================

With tools offered, the emulated model calls them (the arguments fit each
tool's schema) until ``tool_rounds`` rounds of results are in the
conversation, then answers ``The tools said: <results>.``; a ``reply`` knob
is the text before the calls. With a response schema, the reply is JSON that
fits it (``reply`` overrides it, e.g. with a reply that does not fit).
Mid-stream faults count argument fragments as content events, so
``fault=drop,after=2`` cuts a call's arguments.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, TypeAlias, get_args

__all__ = ["FAULTS", "Behaviour", "Fault", "parse_knobs", "split_model", "with_knobs"]

Fault: TypeAlias = Literal[
    "rate_limited",  # 429 + retry-after / RESOURCE_EXHAUSTED
    "overloaded",  # Anthropic 529, OpenAI/Gemini 503, UNAVAILABLE
    "server_error",  # 500 / INTERNAL
    "invalid_key",  # each provider's real authentication failure
    "invalid_request",  # 400 / INVALID_ARGUMENT
    "context_too_long",  # 400 with the provider's context-length message
    "model_not_found",  # 404 / NOT_FOUND
    "drop",  # connection dropped after `after` content events
    "truncate",  # clean end of stream before the final event
    "error_event",  # an in-band error event in the middle of the stream
    "stall",  # keep the connection open, send nothing more
]
FAULTS: tuple[str, ...] = get_args(Fault)
BEFORE_STREAM_FAULTS = frozenset(
    {
        "rate_limited",
        "overloaded",
        "server_error",
        "invalid_key",
        "invalid_request",
        "context_too_long",
        "model_not_found",
    }
)

KNOB_HEADER = "x-rxllm-emulator"
MODEL_SEPARATOR = "~"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the emulator answers one request."""

    ttft: float = 0.0
    tps: float = 0.0
    chunk: int = 1
    words: int = 60
    reasoning: bool | None = None
    reply: str | None = None
    fault: Fault | None = None
    after: int = 3
    retry_after: float = 1.0
    times: int | None = None
    tool_calls: int = 1
    tool_rounds: int = 1
    args: str | None = None

    @property
    def mid_stream_fault(self) -> Fault | None:
        return self.fault if self.fault and self.fault not in BEFORE_STREAM_FAULTS else None

    @property
    def before_stream_fault(self) -> Fault | None:
        return self.fault if self.fault in BEFORE_STREAM_FAULTS else None

    def merged(self, knobs: str | None) -> Behaviour:
        """This behaviour with ``knobs`` (the ``key=value,...`` syntax) applied on top."""
        return replace(self, **parse_knobs(knobs)) if knobs else self


def parse_knobs(text: str) -> dict[str, Any]:
    """Parse ``key=value,key=value``; raises ``ValueError`` naming a bad key or value."""
    known = {f.name: f for f in fields(Behaviour)}
    out: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = pair.partition("=")
        key = key.strip()
        value = urllib.parse.unquote(raw.strip())
        if not sep or key not in known:
            raise ValueError(f"unknown emulator knob {pair!r}; known: {', '.join(known)}")
        try:
            if key in ("ttft", "tps", "retry_after"):
                number = float(value)
                if number < 0:
                    raise ValueError
                out[key] = number
            elif key in ("chunk", "words", "after", "times", "tool_calls", "tool_rounds"):
                count = int(value)
                if count < (1 if key in ("chunk", "words", "tool_calls") else 0):
                    raise ValueError
                out[key] = count
            elif key == "reasoning":
                out[key] = {"on": True, "off": False}[value.lower()]
            elif key == "fault":
                if value not in FAULTS:
                    raise ValueError
                out[key] = value
            else:
                out[key] = value
        except (ValueError, KeyError):
            raise ValueError(f"bad value for emulator knob {key!r}: {value!r}") from None
    return out


def split_model(model: str) -> tuple[str, str | None]:
    """``"claude~fault=drop"`` → ``("claude", "fault=drop")``."""
    base, sep, knobs = model.partition(MODEL_SEPARATOR)
    return base, (knobs if sep else None)


def with_knobs(model: str, **knobs: object) -> str:
    """``model`` with emulator knobs appended, values URL-quoted.

    Example:
        >>> with_knobs("gpt-4o", fault="drop", after=2)
        'gpt-4o~fault=drop,after=2'
    """
    text = ",".join(f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in knobs.items())
    return f"{model}{MODEL_SEPARATOR}{text}" if text else model

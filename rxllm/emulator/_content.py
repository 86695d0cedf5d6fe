"""What the emulator says: deterministic replies, token pieces, continuation, max_tokens."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..request import CONTINUATION_INSTRUCTION
from ._behaviour import Behaviour
from ._schema import instance_of

__all__ = ["Offered", "Plan", "PlannedCall", "count_tokens", "plan_reply", "tokenize"]

_WORDS = (
    "the stream carries every token in order while the observer reacts to each event as it "
    "arrives and a cold observable starts work only when someone subscribes so a cancelled "
    "request closes its connection at once naïve café Zürich crème brûlée smörgåsbord "
    "façade jalapeño résumé München Ελληνικά русский 日本語 中文 한국어 — “quoted” "
    "emoji 🚀 ✨ 👋🏽 tokens usage latency throughput backpressure operator scheduler"
).split()

_REASONING_WORDS = (
    "first consider what the user asks then weigh the options check the facts and "
    "plan a short clear answer before writing it out step by step"
).split()

_PIECE = re.compile(r"\s*\S{1,4}|\s+")


def tokenize(text: str) -> list[str]:
    """Split text into token-like pieces (a word's first four characters carry its space).

    Concatenating the pieces gives back ``text`` exactly; multi-byte words are
    split across pieces (``" Zür" + "ich"``), as real tokenizers do.
    """
    return _PIECE.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


def _sentence(rng: random.Random, words: list[str], count: int) -> str:
    chosen = [rng.choice(words) for _ in range(count)]
    out: list[str] = []
    for i in range(0, len(chosen), 12):
        part = " ".join(chosen[i : i + 12])
        out.append(part[0].upper() + part[1:] + ".")
    return " ".join(out)


def generated_reply(seed_text: str, words: int) -> str:
    rng = random.Random(hashlib.sha256(seed_text.encode()).digest())
    return _sentence(rng, list(_WORDS), words)


def generated_reasoning(seed_text: str) -> str:
    rng = random.Random(hashlib.sha256(b"reasoning:" + seed_text.encode()).digest())
    return _sentence(rng, list(_REASONING_WORDS), 24)


@dataclass(frozen=True, slots=True)
class Offered:
    """What a request offers the model, read by each dialect from its own fields."""

    tools: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    """(name, JSON Schema of the arguments) of each tool offered."""
    tool_choice: str = "auto"
    """``"auto"``, ``"none"``, ``"required"`` or a tool's name."""
    schema: Mapping[str, Any] | None = None
    """The JSON Schema the reply must fit (structured output), if any."""


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One tool call the emulated model makes."""

    index: int
    name: str
    arguments: str
    """The arguments, JSON text."""
    pieces: tuple[str, ...]
    """``arguments`` in the fragments it streams as (may be cut by ``max_tokens``)."""
    key: str
    """A stable, request-unique suffix for the call's id (each dialect shapes its own)."""

    @property
    def parsed(self) -> Any:
        return json.loads(self.arguments)


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a dialect streams for one successful request."""

    model: str
    reasoning: tuple[str, ...]
    """Reasoning token pieces (empty when reasoning is off)."""
    text: tuple[str, ...]
    """Reply token pieces after the prefill (the continuation)."""
    prompt_tokens: int
    finish: Literal["stop", "length", "tool_calls"]
    behaviour: Behaviour
    tool_calls: tuple[PlannedCall, ...] = ()
    """Tool calls after the text, in order (``finish`` is then ``tool_calls``)."""

    @property
    def completion_tokens(self) -> int:
        calls = sum(len(call.pieces) for call in self.tool_calls)
        return len(self.reasoning) + len(self.text) + calls

    @property
    def reasoning_tokens(self) -> int:
        return len(self.reasoning)

    def text_chunks(self) -> list[str]:
        """Reply pieces grouped ``behaviour.chunk`` tokens per content event."""
        return _group(self.text, self.behaviour.chunk)

    def reasoning_chunks(self) -> list[str]:
        return _group(self.reasoning, self.behaviour.chunk)

    def stopped_at(self, stops: Sequence[str]) -> tuple[Plan, str | None]:
        """The reply cut before the first stop sequence it contains (not sent; finish
        ``stop``) and that sequence; this plan and ``None`` when there is none."""
        text = "".join(self.text)
        hits = [(at, stop) for stop in stops if stop and (at := text.find(stop)) >= 0]
        if not hits:
            return self, None
        cut, sequence = min(hits, key=lambda hit: hit[0])
        kept: list[str] = []
        used = 0
        for piece in self.text:
            if used + len(piece) >= cut:
                if cut > used:
                    kept.append(piece[: cut - used])
                break
            kept.append(piece)
            used += len(piece)
        return replace(self, text=tuple(kept), finish="stop"), sequence


def _group(pieces: tuple[str, ...], size: int) -> list[str]:
    return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]


def plan_reply(
    *,
    model: str,
    conversation: list[tuple[str, str]],
    system: str | None,
    max_tokens: int | None,
    want_reasoning: bool,
    behaviour: Behaviour,
    offered: Offered | None = None,
) -> Plan:
    """Decide the reply to ``conversation`` (``(role, text)`` pairs, any trailing assistant
    turn being a prefill; ``("tool", result)`` for a tool's result).

    The reply depends only on the conversation before the prefill and the
    model, so the same request gives the same reply and a request that ends
    with a prefix of that reply continues it without repeating. With tools or a
    schema ``offered``, see the module docstring of ``_behaviour``.
    """
    offered = offered or Offered()
    prefill = ""
    turns = list(conversation)
    if (
        len(turns) >= 2
        and turns[-1] == ("user", CONTINUATION_INSTRUCTION)
        and turns[-2][0] == "assistant"
    ):
        # rxllm's resume instruction for providers without native prefill: the
        # emulated model follows it, continuing as if the reply had been prefilled.
        turns.pop()
    if turns and turns[-1][0] == "assistant":
        prefill = turns.pop()[1]
    seed = "\n".join(f"{role}:{text}" for role, text in turns) + f"\nmodel:{model}"
    calls = _planned_calls(offered, turns, behaviour, seed)
    if behaviour.reply is not None:
        full = behaviour.reply
    elif calls:
        full = ""
    elif offered.schema is not None:
        full = json.dumps(instance_of(offered.schema, _rng("schema:" + seed)), ensure_ascii=False)
    elif turns and turns[-1][0] == "tool":
        results = [text for role, text in reversed(turns) if role == "tool"]
        full = "The tools said: " + "; ".join(reversed(results)) + "."
    else:
        full = generated_reply(seed, behaviour.words)
    pieces = tokenize(full)
    rest = _after_prefill(pieces, full, prefill)
    reasoning_on = want_reasoning if behaviour.reasoning is None else behaviour.reasoning
    reasoning = tuple(tokenize(generated_reasoning(seed))) if reasoning_on and not prefill else ()
    prompt_text = (system or "") + "".join(text for _, text in conversation)
    prompt_tokens = count_tokens(prompt_text) + 4 * len(conversation) + (3 if system else 0)
    finish: Literal["stop", "length", "tool_calls"] = "tool_calls" if calls else "stop"
    wanted = len(reasoning) + len(rest) + sum(len(call.pieces) for call in calls)
    if max_tokens is not None and wanted > max_tokens:
        finish = "length"
        reasoning = reasoning[:max_tokens]
        rest = rest[: max(0, max_tokens - len(reasoning))]
        left = max_tokens - len(reasoning) - len(rest)
        cut: list[PlannedCall] = []
        for call in calls:
            if left <= 0:
                break
            cut.append(replace(call, pieces=call.pieces[:left]))
            left -= len(call.pieces)
        calls = cut
    return Plan(
        model=model,
        reasoning=reasoning,
        text=tuple(rest),
        prompt_tokens=prompt_tokens,
        finish=finish,
        behaviour=behaviour,
        tool_calls=tuple(calls),
    )


def _rng(seed: str) -> random.Random:
    return random.Random(hashlib.sha256(seed.encode()).digest())


def _planned_calls(
    offered: Offered, turns: list[tuple[str, str]], behaviour: Behaviour, seed: str
) -> list[PlannedCall]:
    """The calls the model makes now: none without tools, with ``tool_choice="none"``, or
    once ``tool_rounds`` rounds of results are in (unless a call is required)."""
    if not offered.tools or offered.tool_choice == "none":
        return []
    rounds = sum(
        1
        for i, (role, _) in enumerate(turns)
        if role == "tool" and (i == 0 or turns[i - 1][0] != "tool")
    )
    forced = offered.tool_choice != "auto"
    if not forced and rounds >= behaviour.tool_rounds:
        return []
    names = dict(offered.tools)
    if offered.tool_choice in names:
        chosen = [offered.tool_choice] * behaviour.tool_calls
    else:
        order = [name for name, _ in offered.tools]
        chosen = [order[i % len(order)] for i in range(behaviour.tool_calls)]
    calls = []
    for index, name in enumerate(chosen):
        if behaviour.args is not None:
            arguments = behaviour.args
        else:
            value = instance_of(names[name], _rng(f"args:{index}:{name}:{seed}"))
            arguments = json.dumps(value, ensure_ascii=False)
        key = hashlib.sha256(f"{index}:{name}:{seed}".encode()).hexdigest()[:24]
        calls.append(PlannedCall(index, name, arguments, tuple(tokenize(arguments)), key))
    return calls


def _after_prefill(pieces: list[str], full: str, prefill: str) -> list[str]:
    if not prefill:
        return pieces
    if not full.startswith(prefill):
        return pieces  # not a prefix: answer afresh, as a real model would
    consumed = ""
    for i, piece in enumerate(pieces):
        if consumed == prefill:
            return pieces[i:]
        consumed += piece
        if len(consumed) > len(prefill):
            break
    if consumed == prefill:
        return []
    return tokenize(full[len(prefill) :])

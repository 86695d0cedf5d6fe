"""Resuming never loses text: a restated start is dropped only when that is certain.

OpenAI, Gemini and Grok do not continue a trailing assistant message, so a cut reply is
resumed with an instruction to continue it, and a continuation that begins by restating the
end of the cut text has that start removed. The rule (``rxllm/provider.py``): the start is
dropped only when it repeats an ending of the cut text that is at least 32 characters long
and more than twice as long as the longest span the cut text already repeats within itself.
Anything else is kept; ``done.details`` says what was dropped or kept.
"""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator, Iterator

import pytest

from rxllm.emulator import Emulator, with_knobs
from rxllm.emulator._content import generated_reply
from rxllm.events import DoneEvent, FinishReason, StreamEvent, TokenEvent, Usage
from rxllm.operators import retry_on_interrupt
from rxllm.provider import _Restatement, _without_repeated_start

from .operators.emulated import build, model, run, text_of

# The vendors resumed with the continuation instruction (Anthropic continues a prefill).
INSTRUCTED = ["openai", "gemini", "grok"]

HA = " ".join(["ha"] * 30)


def periodic(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def replies() -> Iterator[str]:
    """Random and repetitive replies: the emulator's own, random strings over small
    alphabets, units of up to 12 characters repeated, and text that turns periodic."""
    rng = random.Random(20240610)
    for seed in range(150):
        yield generated_reply(f"user:prompt {seed}\nmodel:m", rng.choice([8, 30, 60]))
    for alphabet in ("ab", "ab ", "abc", "ha ", string.ascii_lowercase + " "):
        for _ in range(40):
            yield "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 160)))
    for unit in ("ha ", "ha", "a", "la la land ", "-", "12", "ab ab abc ", "—", "👋🏽 "):
        yield periodic(unit, 150)
    yield HA
    for _ in range(40):  # a unit of up to 12 characters repeated, after an introduction
        unit = "".join(rng.choice("ha !") for _ in range(rng.randint(1, 12)))
        yield generated_reply(f"intro {rng.random()}", rng.randint(1, 8)) + periodic(unit, 120)


def refrains() -> Iterator[tuple[str, int]]:
    """Replies that return to a long refrain (verse and chorus), with the period."""
    rng = random.Random(1969)
    for _ in range(30):
        chorus = generated_reply(f"chorus {rng.random()}", rng.randint(3, 8)) + " "
        verse = generated_reply(f"verse {rng.random()}", rng.randint(3, 8)) + " "
        yield (chorus + verse) * 2 + chorus, len(chorus + verse)


def dropped(partial: str, continuation: str) -> int:
    """Characters the rule removes from a whole continuation of ``partial``."""
    undecided, restated = _Restatement(partial).of(continuation)
    return 0 if undecided else restated


async def tokens(pieces: list[str]) -> AsyncIterator[StreamEvent]:
    for piece in pieces:
        yield TokenEvent(piece)
    yield DoneEvent(Usage(1, len(pieces)), FinishReason.STOP, "m", "emulated")


async def resumed(partial: str, pieces: list[str]) -> tuple[str, DoneEvent]:
    events = [e async for e in _without_repeated_start(tokens(pieces), partial)]
    final = events[-1]
    assert isinstance(final, DoneEvent)
    return text_of(events), final


# -- the reproduction: a reply that genuinely repeats itself, resumed end to end ---------------


@pytest.mark.parametrize("name", INSTRUCTED)
async def test_a_reply_that_repeats_itself_is_resumed_without_losing_text(
    name: str, emulator: Emulator
) -> None:
    provider = build(name, emulator)
    assert not provider.continues_prefill  # resumed by instruction, so de-duplicated
    try:
        whole, error = await run(provider.stream("Laugh", model=with_knobs(model(name), reply=HA)))
        assert error is None
        cut = with_knobs(model(name), reply=HA, fault="drop", after=5, times=1)
        events, error = await run(
            provider.stream("Laugh", model=cut).pipe(retry_on_interrupt(3, backoff=0))
        )
    finally:
        await provider.aclose()
    assert error is None
    assert text_of(whole) == HA
    assert text_of(events) == HA  # was 12 characters short: " ha ha ha ha" dropped
    final = events[-1]
    assert isinstance(final, DoneEvent)
    assert final.details["attempts"] == 2
    # "ha ha ha ha ha" was cut; the continuation " ha ha ha ha…" repeats its last 12
    # characters, as a genuine continuation of this reply must: kept, and said so
    assert final.details["resume_overlap_kept"] == 12
    assert "resume_restated_dropped" not in final.details


# -- the property: zero characters lost, for random and repetitive replies at every cut -------


def test_the_rule_drops_nothing_from_a_genuine_continuation_at_any_cut() -> None:
    checked = 0
    for reply in replies():
        for cut in range(1, len(reply)):
            assert dropped(reply[:cut], reply[cut:]) == 0, (reply[:cut], reply[cut:])
            checked += 1
    assert checked > 40_000


def test_a_refrain_loses_text_only_where_its_first_return_straddles_the_cut() -> None:
    # "C V C V C" cut during the first return of "C V", before half of it is written: the
    # continuation starts by repeating the last len(C V) characters, exactly what a model
    # that restates them sends, and the text before has repeated nothing half as long.
    # No rule that reads only the text can tell the two apart; this one drops that
    # period and reports it (done.details["resume_restated_dropped"]). Everywhere else,
    # nothing is dropped.
    ambiguous = 0
    for reply, period in refrains():
        for cut in range(1, len(reply)):
            lost = dropped(reply[:cut], reply[cut:])
            if lost:
                assert lost == period
                assert period <= cut < period * 3 // 2 + 1, (reply[:cut], reply[cut:])
                ambiguous += 1
    assert ambiguous > 0


def test_a_long_span_first_repeated_at_the_cut_is_dropped_and_once_repeated_kept() -> None:
    refrain = "Row, row, row your boat gently down the stream. "
    assert dropped(refrain, refrain + "Merrily.") == len(refrain)
    # once the cut text shows the reply repeats it, the same continuation is kept
    assert dropped(refrain * 2, refrain + "Merrily.") == 0


@pytest.mark.parametrize(
    "reply",
    [
        HA,
        generated_reply("user:Tell me about streams\nmodel:gpt-4o", 60),
        periodic("la la land ", 90),
        "".join(random.Random(7).choice("ab ") for _ in range(120)),
        generated_reply("intro", 4) + periodic("ha! ", 60),
    ],
)
async def test_the_stream_delivers_every_character_of_a_genuine_continuation_at_any_cut(
    reply: str,
) -> None:
    rng = random.Random(len(reply))
    for cut in range(1, len(reply)):
        rest = reply[cut:]
        bounds = sorted(rng.sample(range(1, len(rest)), min(len(rest) - 1, 6)))
        pieces = [rest[a:b] for a, b in zip([0, *bounds], [*bounds, len(rest)], strict=True)]
        text, final = await resumed(reply[:cut], pieces)
        assert text == rest, (reply[:cut], rest)
        assert "resume_restated_dropped" not in final.details


@pytest.mark.parametrize("name", INSTRUCTED)
async def test_resumed_replies_lose_nothing_on_the_emulator(name: str, emulator: Emulator) -> None:
    # (scripted reply or the emulator's own, content events before each cut, cuts)
    cases = [(HA, 2, 1), (HA, 11, 1), (HA, 5, 2), (periodic("la la land ", 80), 7, 2)]
    cases += [(None, 1, 1), (None, 9, 1), (None, 30, 1), (None, 6, 2)]
    provider = build(name, emulator)
    try:
        for reply, after, times in cases:
            knobs = {} if reply is None else {"reply": reply}
            whole, error = await run(
                provider.stream("Sing", model=with_knobs(model(name), **knobs))
            )
            assert error is None
            emulator.reset()
            knobs.update(fault="drop", after=after, times=times)
            cut = provider.stream("Sing", model=with_knobs(model(name), **knobs))
            events, error = await run(cut.pipe(retry_on_interrupt(3, backoff=0)))
            assert error is None
            assert text_of(events) == text_of(whole), knobs
            assert len(emulator.requests) == times + 1
    finally:
        await provider.aclose()


# -- what is still dropped: an unambiguous restatement, reported -------------------------------

CUT = "The quick brown fox jumps over the lazy dog, and then"


@pytest.mark.parametrize(
    ("pieces", "restated"),
    [
        (["The quick brown fox jumps", " over the lazy dog, and then it ran", " away."], CUT),
        (
            [" jumps over the lazy", " dog, and then", " it ran away."],
            " jumps over the lazy dog, and then",
        ),
    ],
    ids=["the whole cut reply", "its last words"],
)
async def test_a_restatement_no_genuine_reply_makes_by_chance_is_dropped_and_reported(
    pieces: list[str], restated: str
) -> None:
    text, final = await resumed(CUT, pieces)
    assert text == " it ran away."
    assert final.details["resume_restated_dropped"] == len(restated)
    assert "resume_overlap_kept" not in final.details


@pytest.mark.parametrize("restated", [" dog, and then", " over the lazy dog, and then"])
async def test_a_restated_ending_too_short_to_be_certain_is_kept_and_reported(
    restated: str,
) -> None:
    # under 32 characters: a few words can repeat by chance, so they stay
    text, final = await resumed(CUT, [restated, " it ran away."])
    assert text == restated + " it ran away."
    assert final.details["resume_overlap_kept"] == len(restated)
    assert "resume_restated_dropped" not in final.details


async def test_a_restatement_of_a_reply_that_repeats_itself_is_kept_and_reported() -> None:
    # The cut text repeats 42 characters ("ha ha …"), so a reply like it could repeat its
    # 57 characters: restating them is not certain, and they stay, reported.
    partial = "He laughed: " + periodic("ha ", 45)
    text, final = await resumed(partial, [partial, " and left."])
    assert text == partial + " and left."
    assert final.details["resume_overlap_kept"] == len(partial)


async def test_a_genuine_continuation_with_no_overlap_has_no_resume_details() -> None:
    text, final = await resumed(CUT, [" it", " ran", " away."])
    assert text == " it ran away."
    assert not {"resume_overlap_kept", "resume_restated_dropped"} & set(final.details)

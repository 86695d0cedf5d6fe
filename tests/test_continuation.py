"""Resuming a cut reply on providers without native prefill: an instruction, and no repeats."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rxllm import errors
from rxllm.emulator import Emulator
from rxllm.emulator._content import tokenize
from rxllm.events import DoneEvent, FinishReason, StreamEvent, TokenEvent, Usage
from rxllm.provider import Provider
from rxllm.providers.openai import OpenAIProvider
from rxllm.request import CONTINUATION_INSTRUCTION, StreamRequest
from rxllm.testing import EMULATOR_KEY


class ScriptedProvider(Provider[None]):
    """Answers with the tokens it was given, recording the requests it was sent."""

    name = "scripted"
    api_key_env = ("SCRIPTED_API_KEY",)
    default_model = "scripted-1"

    def __init__(self, tokens: list[str], *, fail_after: int | None = None) -> None:
        super().__init__(api_key="k")
        self.tokens = tokens
        self.fail_after = fail_after
        self.sent: list[StreamRequest] = []

    def _make_client(self) -> None:
        return None

    async def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        self.sent.append(request)
        for i, token in enumerate(self.tokens):
            if self.fail_after is not None and i == self.fail_after:
                raise errors.StreamInterruptedError("cut", provider=self.name)
            yield TokenEvent(token)
        yield DoneEvent(Usage(1, len(self.tokens)), FinishReason.STOP, "scripted-1", self.name)


PARTIAL = "The quick brown fox jumps over the lazy dog, and then"


async def text_after(provider: Provider[None], partial: str = PARTIAL) -> str:
    request = StreamRequest(model="scripted-1", prompt="Tell me about the fox").continued(partial)
    events = [e async for e in provider.events(request)]
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


async def test_a_provider_without_prefill_is_sent_the_continuation_instruction() -> None:
    provider = ScriptedProvider([" it ran", " away."])
    assert await text_after(provider) == " it ran away."
    (sent,) = provider.sent
    turns = sent.conversation()
    assert [m.role for m in turns] == ["user", "assistant", "user"]
    assert turns[1].content == PARTIAL
    assert turns[2].content == CONTINUATION_INSTRUCTION


@pytest.mark.parametrize(
    "tokens",
    [
        [" jumps over the lazy", " dog, and then", " it ran away."],  # the last words
        ["The quick brown fox jumps", " over the lazy dog, and then it ran", " away."],  # all
    ],
)
async def test_a_restated_ending_is_dropped(tokens: list[str]) -> None:
    # " jumps over the lazy dog, and then" is 34 characters, the cut text repeats at most 4
    assert await text_after(ScriptedProvider(tokens)) == " it ran away."


async def test_a_dropped_restatement_is_reported_on_the_done() -> None:
    provider = ScriptedProvider([" jumps over the lazy", " dog, and then", " it ran away."])
    request = StreamRequest(model="scripted-1", prompt="fox?").continued(PARTIAL)
    done = [e async for e in provider.events(request)][-1]
    assert isinstance(done, DoneEvent)
    assert done.details == {"resume_restated_dropped": len(" jumps over the lazy dog, and then")}


async def test_a_short_coincidental_repeat_is_kept() -> None:
    # " then" also ends the partial text, but five characters are no evidence of a repeat.
    assert await text_after(ScriptedProvider([" then", " it ran."])) == " then it ran."


async def test_held_tokens_are_delivered_when_the_stream_fails() -> None:
    provider = ScriptedProvider([" jumps over the", " lazy", " cat"], fail_after=2)
    request = StreamRequest(model="scripted-1", prompt="fox?").continued(PARTIAL)
    seen: list[StreamEvent] = []

    async def drain() -> None:
        async for event in provider.events(request):
            seen.append(event)

    with pytest.raises(errors.StreamInterruptedError):
        await drain()
    assert "".join(e.text for e in seen if isinstance(e, TokenEvent)) == " jumps over the lazy"


async def test_a_provider_with_prefill_gets_the_assistant_turn_as_is() -> None:
    class Prefilling(ScriptedProvider):
        continues_prefill = True

    provider = Prefilling([" it ran away."])
    assert await text_after(provider) == " it ran away."
    assert provider.sent[0].conversation()[-1].content == PARTIAL


async def test_openai_resume_through_the_emulator_sends_the_instruction(
    emulator: Emulator,
) -> None:
    provider = OpenAIProvider(api_key=EMULATOR_KEY, base_url=emulator.base_url("openai"))
    try:
        whole = await provider.complete("Tell me a story", model="gpt-4o")
        cut = len(whole.text) // 3
        stream = provider.stream("Tell me a story", model="gpt-4o").continued(whole.text[:cut])
        rest = await provider.complete(stream.request)
    finally:
        await provider.aclose()
    assert whole.text[:cut] + rest.text == whole.text
    messages = emulator.requests[-1].body["messages"]
    assert messages[-2] == {"role": "assistant", "content": whole.text[:cut]}
    assert messages[-1] == {"role": "user", "content": CONTINUATION_INSTRUCTION}


async def test_staged_operators_keep_one_budget_across_a_resumed_stream(
    emulator: Emulator,
) -> None:
    from rxllm import collect
    from rxllm.operators import retry_on_interrupt, take_tokens, timeout

    provider = OpenAIProvider(api_key=EMULATOR_KEY, base_url=emulator.base_url("openai"))
    try:
        reference = await provider.complete("Tell me a story", model="gpt-4o")
        cut = provider.stream("Tell me a story", model="gpt-4o~fault=drop,after=4,times=1")
        result = await collect(
            cut.pipe(timeout(idle=30), take_tokens(6), retry_on_interrupt(3, backoff=0))
        )
    finally:
        await provider.aclose()
    # 4 tokens before the drop, 2 from the continuation: take_tokens' 6 span both attempts
    assert result.finish_reason == "token_limit"
    assert result.text == "".join(tokenize(reference.text)[:6])
    assert result.provider == "openai"  # the early done still knows who answered
    first, second = emulator.requests[1:]
    assert first.fault == "drop"
    assert second.fault is None
    assert result.text.startswith(
        "".join(second.body["messages"][-2]["content"])  # the continuation's prefill
    )

"""A tour of the bridge with no network and no API key: ``python -m rxllm.demo``.

A stand-in "model" (an async generator) becomes a cold ``Observable[StreamEvent]``
through :func:`rxllm.from_async_iterable`; the demo then consumes it the three
ways rxllm offers and shows that stopping early cancels the upstream work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from reactivex import operators as ops

import rxllm

_REPLY = "Cold observables start work only when someone subscribes. "


async def pretend_model() -> AsyncIterator[rxllm.StreamEvent]:
    """A model that thinks, then streams a reply word by word, then reports usage."""
    yield rxllm.ReasoningEvent("The user wants a one-line summary.")
    words = _REPLY.split()
    finished = False
    try:
        for word in words:
            await asyncio.sleep(0.02)  # a network read
            yield rxllm.TokenEvent(word + " ")
        finished = True
    finally:
        if not finished:
            print("   [upstream] stopped early: a provider would close its connection here")
    yield rxllm.DoneEvent(
        usage=rxllm.Usage(prompt_tokens=12, completion_tokens=len(words) + 7, reasoning_tokens=7),
        finish_reason=rxllm.FinishReason.STOP,
        model="pretend-1",
        provider="demo",
    )


def main() -> None:
    stream = rxllm.from_async_iterable(pretend_model)

    print("1. Blocking iteration (rxllm.iterate), token by token:")
    print("  ", end="")
    for event in rxllm.iterate(stream):
        if isinstance(event, rxllm.TokenEvent):
            print(event.text, end="", flush=True)
    print()

    print("2. The same cold stream again, collected (rxllm.collect_sync):")
    result = rxllm.collect_sync(stream)
    print(f"   text={result.text.strip()!r}")
    print(f"   reasoning={result.reasoning!r}")
    print(f"   usage: {result.usage.total_tokens} tokens, finish={result.finish_reason.value}")

    print("3. Async iteration (rxllm.aiter), breaking out after three tokens:")

    async def first_three() -> list[str]:
        texts: list[str] = []
        async with rxllm.aiter(stream, buffer=1) as events:
            async for event in events:
                if isinstance(event, rxllm.TokenEvent):
                    texts.append(event.text)
                if len(texts) == 3:
                    break
        await asyncio.sleep(0.01)  # let the cancelled upstream finish its cleanup
        return texts

    print(f"   got {asyncio.run(first_three())}")

    print("4. Rx operators compose: tokens only, upper-cased, the first two:")
    upper = stream.pipe(ops.filter(_is_token), ops.map(_shout), ops.take(2))
    texts = [e.text for e in rxllm.iterate(upper) if isinstance(e, rxllm.TokenEvent)]
    time.sleep(0.05)  # the cancelled upstream cleans up on the background thread
    print(f"   got {texts}")


def _is_token(event: rxllm.StreamEvent) -> bool:
    return isinstance(event, rxllm.TokenEvent)


def _shout(event: rxllm.StreamEvent) -> rxllm.StreamEvent:
    return rxllm.TokenEvent(event.text.upper()) if isinstance(event, rxllm.TokenEvent) else event


if __name__ == "__main__":
    main()

"""Events handed over a network read at a time (``Provider.batches``, the bridge's
``from_async_batches``): the same events, in order, with every guarantee of one event at a
time kept: a pulling consumer holds no more than it asked for, a dispose between two events
of a read stops at once, and an error in the middle of a read delivers what came before it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from reactivex import operators as ops

import rxllm
from rxllm import errors
from rxllm.bridge import Demand, demand_scope, from_async_batches
from rxllm.events import DoneEvent, StreamEvent, TokenEvent
from rxllm.operators import take_tokens
from rxllm.provider import Provider
from rxllm.providers.anthropic import AnthropicProvider
from rxllm.providers.gemini import GeminiProvider
from rxllm.providers.openai import OpenAIProvider
from rxllm.request import StreamRequest
from rxllm.testing import EMULATOR_KEY
from tests.providers.support import collect, serve, sse_replay, text_of

from .sources import done


class Batches:
    """A batch source that records how many batches were pulled and whether it was closed."""

    def __init__(self, *batches: Sequence[Any], error: Exception | None = None) -> None:
        self.batches = batches
        self.error = error
        self.pulled = 0
        self.closed = False

    def __call__(self) -> AsyncIterator[Sequence[Any]]:
        return self._run()

    async def _run(self) -> AsyncIterator[Sequence[Any]]:
        try:
            for batch in self.batches:
                self.pulled += 1
                yield batch
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


async def spin(times: int = 20) -> None:
    """Let the loop run the bridge's task as far as it can go."""
    for _ in range(times):
        await asyncio.sleep(0)


# -- the bridge --------------------------------------------------------------------------


async def test_the_items_of_every_batch_arrive_in_order() -> None:
    source = Batches([1, 2, 3], [4], [5, 6])
    items = await from_async_batches(source).pipe(ops.to_list())
    assert items == [1, 2, 3, 4, 5, 6]
    assert source.closed


async def test_a_closed_demand_stops_in_the_middle_of_a_batch_and_the_next_read_waits() -> None:
    source = Batches(["a", "b", "c", "d", "e"], ["f"])
    demand = Demand()
    seen: list[str] = []
    completed = asyncio.Event()

    def on_next(item: str) -> None:
        seen.append(item)
        if len(seen) == 2:
            demand.close()  # the consumer holds two: no more until it opens again

    with demand_scope(demand):
        from_async_batches(source).subscribe(on_next, on_completed=completed.set)
    await spin()
    assert seen == ["a", "b"]
    assert source.pulled == 1  # the rest of the read waits in the bridge; no next read

    demand.open()
    await asyncio.wait_for(completed.wait(), 5)
    assert seen == ["a", "b", "c", "d", "e", "f"]


async def test_aiter_with_a_small_buffer_never_pulls_a_read_ahead_of_what_it_holds() -> None:
    source = Batches(list(range(10)), list(range(10, 20)))
    iterator = rxllm.aiter(from_async_batches(source), buffer=3)  # type: ignore[arg-type]
    first = await iterator.__anext__()
    await spin()
    assert first == 0
    assert source.pulled == 1  # nine of the first read are still to be taken
    rest = [item async for item in iterator]
    assert rest == list(range(1, 20))


async def test_a_dispose_between_two_items_of_a_batch_emits_nothing_more() -> None:
    source = Batches(["a", "b", "c"], ["d"])
    seen: list[str] = []
    subscription: Any = None

    def on_next(item: str) -> None:
        seen.append(item)
        if item == "b":
            subscription.dispose()

    subscription = from_async_batches(source).subscribe(on_next)
    await spin()
    assert seen == ["a", "b"]
    assert source.pulled == 1
    assert source.closed


async def test_take_tokens_stops_inside_a_read() -> None:
    source = Batches([TokenEvent("a"), TokenEvent("b"), TokenEvent("c")], [done()])
    stream = from_async_batches(source).pipe(take_tokens(2))
    result = await rxllm.collect(stream)
    assert result.text == "ab"
    assert source.pulled == 1
    assert source.closed


async def test_an_error_after_a_batch_comes_after_its_items() -> None:
    boom = errors.ServerError("down", status=500)
    source = Batches(["a", "b"], error=boom)
    seen: list[str] = []
    failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    from_async_batches(source).subscribe(seen.append, on_error=failed.set_result)
    assert await asyncio.wait_for(failed, 5) is boom
    assert seen == ["a", "b"]


# -- a provider's reads --------------------------------------------------------------------

WORDS = [f"w{n} " for n in range(40)]


def openai_body(*, error: bool) -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in WORDS]
    if error:
        chunks.append({"error": {"message": "The server had an error", "type": "server_error"}})
    else:
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"" if error else b"data: [DONE]\n\n")


def anthropic_body(*, error: bool) -> bytes:
    def event(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    message = {"id": "msg_1", "model": "claude-haiku-4-5", "usage": {"input_tokens": 3}}
    out = [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    out += [
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
        for w in WORDS
    ]
    if error:
        out.append(event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}))
    else:
        out += [
            event("content_block_stop", {"index": 0}),
            event(
                "message_delta",
                {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(WORDS)}},
            ),
            event("message_stop", {}),
        ]
    return b"".join(out)


def gemini_body(*, error: bool) -> bytes:
    def event(data: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(data)}\r\n\r\n".encode()

    usage = {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}
    out = [
        event(
            {
                "candidates": [{"content": {"parts": [{"text": w}], "role": "model"}, "index": 0}],
                "usageMetadata": usage,
                "modelVersion": "gemini-2.5-flash",
            }
        )
        for w in WORDS
    ]
    if error:
        out.append(event({"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}}))
    else:
        last = {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP"}
        out.append(event({"candidates": [last], "usageMetadata": usage}))
    return b"".join(out)


VENDORS = {
    "openai": ("/chat/completions", openai_body, OpenAIProvider, "gpt-4o"),
    "anthropic": ("/v1/messages", anthropic_body, AnthropicProvider, "claude-haiku-4-5"),
    "gemini": ("/v1beta/models/{spec}", gemini_body, GeminiProvider, "gemini-2.5-flash"),
}


async def replaying(vendor: str, *, error: bool) -> tuple[Any, Provider[Any], StreamRequest]:
    route, body, provider_class, model = VENDORS[vendor]
    runner, url = await serve(route, sse_replay(body(error=error)))
    provider = provider_class(api_key=EMULATOR_KEY, base_url=url)
    return runner, provider, provider.request("Hi", model=model)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_a_body_written_at_once_comes_in_a_few_batches_not_one_per_event(
    vendor: str,
) -> None:
    runner, provider, request = await replaying(vendor, error=False)
    try:
        batches = [list(batch) async for batch in provider.batches(request)]
        result = await rxllm.collect(provider.stream(request))
    finally:
        await provider.aclose()
        await runner.cleanup()
    events = [event for batch in batches for event in batch]
    assert text_of(events) == "".join(WORDS) == result.text
    assert all(batches)  # never an empty batch
    assert isinstance(events[-1], DoneEvent)
    assert batches[-1][-1] is events[-1]
    # One write of the whole body: read in a few reads, far fewer than its 41 events.
    assert len(batches) < len(WORDS) // 2


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_an_in_band_error_in_the_middle_of_a_read_delivers_the_tokens_before_it(
    vendor: str,
) -> None:
    runner, provider, request = await replaying(vendor, error=True)
    seen: list[StreamEvent] = []
    try:
        with pytest.raises(errors.RxllmError) as raised:
            seen.extend(await collect(provider.stream(request).pipe(ops.do_action(seen.append))))
    finally:
        await provider.aclose()
        await runner.cleanup()
    assert isinstance(raised.value, errors.ServerError | errors.OverloadedError)
    assert text_of(seen) == "".join(WORDS)


class _Neither(Provider[None]):
    spec = rxllm.vendors.vendor("openai")

    def _make_client(self) -> None:
        return None


def test_a_provider_implementing_neither_events_nor_batches_says_so() -> None:
    provider = _Neither(api_key="k", base_url="http://127.0.0.1:9")
    with pytest.raises(NotImplementedError, match="neither _events nor _batches"):
        provider._events(StreamRequest(model="m", prompt="Hi"))

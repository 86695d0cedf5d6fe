"""``timeout=`` is a limit per read on every provider; ``max_connections`` bounds the
streams a provider runs at once, and the others wait their turn without timing out.

Each runs through the official SDKs against the emulator. Durations come from the
emulator's pacing (its sleeps are lower bounds), never from measuring the client.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxllm import config, registry
from rxllm.emulator import Emulator, RecordedRequest, with_knobs
from rxllm.errors import ConfigurationError
from rxllm.events import DoneEvent, StreamEvent
from rxllm.provider import Provider
from rxllm.testing import EMULATOR_KEY
from rxllm.vendors import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT
from tests.operators.emulated import NAMES, model, run, text_of

# Gemini's two paths (the SDK's raw pipeline, its public stream) send the request apart.
PATHS = [*NAMES, "gemini-public"]


def built(name: str, emulator: Emulator, **options: Any) -> Provider[Any]:
    """Provider ``name`` (or ``gemini-public``: Gemini on the SDK's public stream) on
    ``emulator``."""
    if name == "gemini-public":
        name, options["raw_stream"] = "gemini", False
    return registry.provider(
        name, api_key=EMULATOR_KEY, base_url=emulator.base_url(name), **options
    )


def vendor_of(name: str) -> str:
    return "gemini" if name == "gemini-public" else name


def most_at_once(requests: list[RecordedRequest]) -> int:
    """The most requests the emulator was serving at the same moment."""
    edges: list[tuple[float, int]] = []
    for request in requests:
        assert request.ended is not None
        edges += [(request.started, 1), (request.ended, -1)]
    at_once = most = 0
    for _, step in sorted(edges):  # at a tie an end (-1) sorts before a start
        at_once += step
        most = max(most, at_once)
    return most


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No RXLLM_ variables and an empty working directory (no rxllm.toml, no pyproject)."""
    for variable in [n for n in os.environ if n.upper().startswith("RXLLM_")]:
        monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path)
    config.configure(None)
    yield
    config.configure(None)


# -- timeout= is a limit per read -----------------------------------------------------------


@pytest.mark.parametrize("name", PATHS)
async def test_a_slow_but_steady_stream_outlasting_the_timeout_is_not_cut(
    name: str, emulator: Emulator
) -> None:
    # 15 words at 10 tokens/s: at least 1.5 s in all, a new event every ~0.1 s. A deadline
    # for the whole call (what xai-sdk and google-genai mean by timeout) would cut it.
    provider = built(name, emulator, timeout=0.5)
    try:
        events, error = await run(
            provider.stream("Hi", model=model(vendor_of(name), tps=10, words=15))
        )
    finally:
        await provider.aclose()
    assert error is None
    assert isinstance(events[-1], DoneEvent)
    assert len(text_of(events).split()) == 15
    (request,) = emulator.requests
    assert request.ended is not None
    assert request.ended - request.started > 0.5  # it did outlast the limit


@pytest.mark.parametrize("name", NAMES)
def test_without_a_timeout_a_documented_default_bounds_each_read(
    name: str, no_settings: None
) -> None:
    provider = registry.provider(name, api_key=EMULATOR_KEY)  # nothing is sent
    assert provider.timeout == DEFAULT_TIMEOUT < 600  # not the SDKs' 600 s
    assert provider.max_connections == DEFAULT_MAX_CONNECTIONS


# -- max_connections: a limit with a queue ----------------------------------------------------


@pytest.mark.parametrize("name", PATHS)
async def test_streams_beyond_max_connections_wait_their_turn_and_all_complete(
    name: str, emulator: Emulator
) -> None:
    # 10 streams, 2 at a time, each at least 0.3 s (6 words at 20 tokens/s): the last ones
    # wait more than 1.2 s for a slot, longer than timeout=1, and must not time out.
    provider = built(name, emulator, max_connections=2, timeout=1.0)
    replies = [f"lane {i} says hello there friend" for i in range(10)]
    try:
        results = await asyncio.gather(
            *(
                run(
                    provider.stream("Hi", model=with_knobs(model(vendor_of(name)), reply=r, tps=20))
                )
                for r in replies
            )
        )
    finally:
        await provider.aclose()
    for (events, error), reply in zip(results, replies, strict=True):
        assert error is None
        assert text_of(events) == reply
        assert isinstance(events[-1], DoneEvent)
    requests = emulator.requests
    assert len(requests) == 10  # one request per stream: none failed and was sent again
    assert most_at_once(requests) <= 2
    starts = sorted(r.started for r in requests)
    assert starts[-1] - starts[0] > 1.0  # some stream did wait longer than the timeout


class Subscribed:
    """One subscription on the running loop: whether it has streamed, and how it ended."""

    def __init__(self, stream: Observable[StreamEvent]) -> None:
        loop = asyncio.get_running_loop()
        self.streaming = asyncio.Event()
        self.ended: asyncio.Future[Exception | None] = loop.create_future()
        self.subscription = stream.subscribe(
            on_next=lambda _: self.streaming.set(),
            on_error=self.ended.set_result,
            on_completed=lambda: self.ended.set_result(None),
            scheduler=AsyncIOScheduler(loop),
        )


@pytest.mark.parametrize("name", PATHS)
async def test_a_stream_stopped_while_it_waits_for_a_slot_sends_nothing_and_frees_nothing(
    name: str, emulator: Emulator
) -> None:
    provider = built(name, emulator, max_connections=1)
    slow = model(vendor_of(name), tps=20, words=8)
    # Which of the two gets the slot is not promised (the SDKs may await a thread first).
    both = [Subscribed(provider.stream("Hi", model=slow)) for _ in "ab"]
    try:
        watching = [asyncio.ensure_future(s.streaming.wait()) for s in both]
        await asyncio.wait(watching, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        for watch in watching:
            watch.cancel()
        running, waiting = both if both[0].streaming.is_set() else both[::-1]
        waiting.subscription.dispose()
        assert await asyncio.wait_for(running.ended, 30) is None
        assert not waiting.ended.done()  # stopped, not failed
        assert len(emulator.requests) == 1  # the stopped stream never reached the server
        # Its place in the queue is gone: one slot again, neither held nor given twice.
        emulator.reset()
        results = await asyncio.gather(*(run(provider.stream("Hi", model=slow)) for _ in "ab"))
    finally:
        for subscribed in both:
            subscribed.subscription.dispose()
        await provider.aclose()
    assert [error for _, error in results] == [None, None]
    assert most_at_once(emulator.requests) == 1


# -- configuration ------------------------------------------------------------------------------


def test_max_connections_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, no_settings: None
) -> None:
    monkeypatch.setenv("RXLLM_OPENAI__MAX_CONNECTIONS", "7")
    monkeypatch.setenv("RXLLM_XAI__MAX_CONNECTIONS", "3")  # an alias
    assert registry.provider("openai", api_key=EMULATOR_KEY).max_connections == 7
    assert registry.provider("grok", api_key=EMULATOR_KEY).max_connections == 3


def test_max_connections_and_timeout_from_toml_and_explicit_arguments_win(
    no_settings: None,
) -> None:
    Path("rxllm.toml").write_text("[gemini]\nmax_connections = 4\ntimeout = 30\n")
    from_file = registry.provider("gemini", api_key=EMULATOR_KEY)
    assert (from_file.max_connections, from_file.timeout) == (4, 30)
    explicit = registry.provider("gemini", api_key=EMULATOR_KEY, max_connections=9, timeout=2)
    assert (explicit.max_connections, explicit.timeout) == (9, 2)


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_max_connections_setting_is_a_configuration_error(
    value: str, monkeypatch: pytest.MonkeyPatch, no_settings: None
) -> None:
    monkeypatch.setenv("RXLLM_ANTHROPIC__MAX_CONNECTIONS", value)
    with pytest.raises(ConfigurationError, match="max_connections"):
        registry.provider("anthropic", api_key=EMULATOR_KEY)


@pytest.mark.parametrize("option", ["max_connections", "timeout"])
def test_a_non_positive_limit_passed_to_a_provider_is_a_configuration_error(
    option: str,
) -> None:
    with pytest.raises(ConfigurationError, match=option):
        registry.provider("openai", api_key=EMULATOR_KEY, **{option: 0})

"""rxllm.connect: the real service where a key is set, the emulator otherwise, and saying which."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from reactivex import operators as ops

import rxllm
from rxllm.bridge import BlockingCallInEventLoopError
from rxllm.connect import Connection, connect, stop_shared_emulator
from rxllm.emulator import Emulator
from rxllm.errors import ConfigurationError
from rxllm.operators import take_tokens
from rxllm.testing import EMULATOR_KEY

FOUR = ("anthropic:claude-haiku-4-5", "openai:gpt-5-mini", "gemini:gemini-2.5-flash", "grok:grok-4")
KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "XAI_API_KEY")


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    for name in ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "GEMINI_BASE_URL", "XAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


async def test_without_keys_every_provider_is_emulated_and_it_says_so() -> None:
    said: list[str] = []
    async with connect(*FOUR, notice=said.append) as models:
        assert isinstance(models, Connection)
        assert [m.spec for m in models] == list(FOUR)
        assert models.emulated == ["anthropic", "openai", "gemini", "grok"]
        emulator = models.emulator
        assert emulator is not None
        for model in models:
            assert (await model.complete("Hi", max_tokens=3)).usage.completion_tokens == 3
        assert len(emulator.requests) == 4
        assert models["grok"] is models[3]
        assert models["openai:gpt-5-mini"] is models[1]
    assert said == [
        f"anthropic: no ANTHROPIC_API_KEY set, using the local emulator at "
        f"{emulator.base_url('anthropic')}",
        f"openai: no OPENAI_API_KEY set, using the local emulator at {emulator.base_url('openai')}",
        "gemini: no GEMINI_API_KEY or GOOGLE_API_KEY set, using the local emulator at "
        f"{emulator.base_url('gemini')}",
        f"grok: no XAI_API_KEY set, using the local emulator at {emulator.xai_address}",
    ]


async def test_a_provider_with_a_key_uses_its_service(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "The real service" here is the fixture's emulator, reached through the SDK's own variables.
    monkeypatch.setenv("OPENAI_API_KEY", EMULATOR_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url("openai"))
    said: list[str] = []
    async with connect("openai:gpt-5-mini", "xai:grok-4", notice=said.append) as (gpt, grok):
        assert await gpt.generate("Hi", max_tokens=2)
        assert await grok.generate("Hi", max_tokens=2)
        assert grok.provider.base_url != emulator.xai_address
    assert [r.dialect for r in emulator.requests] == ["openai"]  # grok went to its own emulator
    assert said[0] == f"openai: API key found, using {emulator.base_url('openai')}"
    assert said[1].startswith("grok: no XAI_API_KEY set, using the local emulator at 127.0.0.1:")


async def test_emulate_forces_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-real-looking-key")
    said: list[str] = []
    async with connect(FOUR[0], emulate=True, notice=said.append) as (claude,):
        assert await claude.generate("Hi", max_tokens=2)
    assert said[0].startswith("anthropic: asked to emulate, using the local emulator at http://")
    assert "sk-real-looking-key" not in said[0]


async def test_awaited_connections_share_one_emulator_per_loop() -> None:
    first = await connect(FOUR[0], notice=None)
    second = await connect(FOUR[1], FOUR[1], notice=None)
    try:
        assert first.emulator is not None
        assert first.emulator is second.emulator
        assert second[0].provider is second[1].provider  # one provider (one pool) per provider
        assert await second[0].generate("Hi", max_tokens=2)
    finally:
        await first.aclose()
        await second.aclose()
    # still running for the next cell
    third = await connect(FOUR[2], notice=None)
    try:
        assert third.emulator is first.emulator
        assert await third[0].generate("Hi", max_tokens=1)
    finally:
        await third.aclose()
        await stop_shared_emulator()
    fourth = await connect(FOUR[2], notice=None)
    try:
        assert fourth.emulator is not first.emulator
    finally:
        await fourth.aclose()
        await stop_shared_emulator()


async def test_everything_is_checked_before_an_emulator_starts() -> None:
    said: list[str] = []
    with pytest.raises(ConfigurationError, match="unknown model 'gpt-0'"):
        async with connect(FOUR[0], "openai:gpt-0", notice=said.append):
            pass  # pragma: no cover
    with pytest.raises(ConfigurationError, match="not a model string"):
        await connect("claude-haiku-4-5", notice=said.append)
    with pytest.raises(ConfigurationError, match="unknown provider"):
        await connect("acme:model", notice=said.append)
    with pytest.raises(ValueError, match="at least one"):
        connect()
    assert said == []


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Emulator]:
    """Every emulator ``connect`` starts from here on."""
    emulators: list[Emulator] = []
    start = Emulator.start

    async def recording_start(self: Emulator) -> None:
        emulators.append(self)
        await start(self)

    monkeypatch.setattr(Emulator, "start", recording_start)
    return emulators


async def test_a_real_services_unknown_model_is_found_before_an_emulator_starts(
    started: list[Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-looking-key")
    with pytest.raises(ConfigurationError, match="unknown model 'no-such-model'"):
        async with connect(FOUR[0], "openai:no-such-model", notice=None):
            pass  # pragma: no cover
    with pytest.raises(ConfigurationError, match="unknown model 'no-such-model'"):
        await connect(FOUR[0], "openai:no-such-model", notice=None)
    assert started == []


async def test_a_failure_after_the_emulator_started_stops_it_and_closes_the_providers(
    started: list[Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rxllm.provider import Provider

    closed: list[str] = []
    aclose = Provider.aclose

    async def recording_aclose(self: Provider[object]) -> None:
        closed.append(self.name)
        await aclose(self)

    monkeypatch.setattr(Provider, "aclose", recording_aclose)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-looking-key")

    def failing_notice(line: str) -> None:
        raise RuntimeError("the notice failed")

    with pytest.raises(RuntimeError, match="the notice failed"):
        async with connect(FOUR[0], FOUR[1], notice=failing_notice):
            pass  # pragma: no cover
    assert len(started) == 1
    assert started[0]._runner is None, "the emulator kept running"
    assert started[0]._xai is None
    assert sorted(closed) == ["anthropic", "openai"]


# -- blocking: `with connect(...)` in scripts, and never blocking a running loop ------------


def test_with_connect_in_a_script_serves_the_blocking_helpers_and_closes_on_exit(
    started: list[Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rxllm.provider import Provider

    closed: list[str] = []
    aclose = Provider.aclose

    async def recording_aclose(self: Provider[object]) -> None:
        closed.append(self.name)
        await aclose(self)

    monkeypatch.setattr(Provider, "aclose", recording_aclose)
    said: list[str] = []
    with connect(*FOUR, notice=said.append) as models:
        assert models.emulated == ["anthropic", "openai", "gemini", "grok"]
        for model in models:
            assert rxllm.collect_sync(model.stream("Hi", max_tokens=3)).usage.completion_tokens == 3
            events = list(rxllm.iterate(model.stream("Hi", max_tokens=2)))
            assert [e.type for e in events].count("token") == 2
            assert events[-1].type == "done"
        last = models["grok"].stream("Hi", max_tokens=2).pipe(ops.to_list()).run()[-1]
        assert last.type == "done"
        emulator = models.emulator
        assert emulator is not None
        assert len(emulator.requests) == 9
    assert said[0].startswith("anthropic: no ANTHROPIC_API_KEY set, using the local emulator at")
    assert started == [emulator]
    assert emulator._runner is None, "the emulator kept running"
    assert emulator._xai is None
    assert sorted(closed) == ["anthropic", "gemini", "grok", "openai"]


def test_with_connect_that_fails_leaves_no_emulator_running(started: list[Emulator]) -> None:
    def failing_notice(line: str) -> None:
        raise RuntimeError("the notice failed")

    with (
        pytest.raises(RuntimeError, match="the notice failed"),
        connect(FOUR[0], notice=failing_notice),
    ):
        pass  # pragma: no cover
    assert len(started) == 1
    assert started[0]._runner is None, "the emulator kept running"


@pytest.mark.timeout(60)  # the failure this guards against is a hang
def test_blocking_calls_after_await_connect_raise_at_once_and_the_loop_keeps_serving() -> None:
    # A Jupyter cell: `await connect(...)` starts the shared emulator on this very loop, so
    # a blocking call here would wait for a server that can no longer run.
    async def cell() -> list[str]:
        connection = await connect(FOUR[1], notice=None)
        (gpt,) = connection
        messages: list[str] = []
        try:
            blocking: list[Callable[[], object]] = [
                lambda: rxllm.collect_sync(gpt.stream("Hi", max_tokens=2)),
                lambda: next(rxllm.iterate(gpt.stream("Hi", max_tokens=2))),
                lambda: gpt.stream("Hi", max_tokens=2).run(),
                lambda: gpt.stream("Hi", max_tokens=2).pipe(take_tokens(1)).run(),
            ]
            for call in blocking:
                with pytest.raises(BlockingCallInEventLoopError) as raised:
                    call()
                messages.append(str(raised.value))
            with (
                pytest.raises(BlockingCallInEventLoopError, match=r"async with rxllm\.connect"),
                connect(FOUR[0], notice=None),
            ):
                pass  # pragma: no cover
            result = await rxllm.collect(gpt.stream("Hi", max_tokens=2))
            assert result.usage.completion_tokens == 2
            assert connection.emulator is not None
            assert len(connection.emulator.requests) == 1  # only the awaited stream asked
        finally:
            await connection.aclose()
            await stop_shared_emulator()
        return messages

    messages = asyncio.run(cell())
    assert "await rxllm.collect(" in messages[0]
    assert "async for event in rxllm.aiter(" in messages[1]
    assert all("event loop" in message for message in messages)

"""The provider contract: what every vendor must do, tested once over all of them.

Parametrized over every registered vendor the emulator can serve (rxllm's four,
the OpenAI-compatible presets) and a vendor registered by a plugin package
through the ``rxllm.providers`` entry point (``plugin_site/``). Each runs
through its official SDK against the emulator over real sockets. A new vendor
is in this suite as soon as its spec is registered.

Per-vendor files in ``tests/providers/`` keep only what is vendor-specific
(capture fidelity, request mapping, vendor-only fields).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from rxllm import catalog as rxllm_catalog
from rxllm import errors, registry
from rxllm.emulator import Emulator
from rxllm.events import DoneEvent, ReasoningEvent, StreamEvent, TokenEvent
from rxllm.operators import retry_on_interrupt
from rxllm.provider import Provider
from rxllm.testing import EMULATOR_KEY
from rxllm.vendors import ProviderSpec
from tests.operators.emulated import run, text_of

PLUGIN = "acme-plugin"
PLUGIN_SITE = Path(__file__).parent / "plugin_site"
VENDORS = [spec.name for spec in registry.specs() if spec.emulator is not None] + [PLUGIN]
"""Read at collection: adding a spec adds a vendor to every test below."""

# A model each of rxllm's own vendors knows (cheap ones); the others use their default.
MODELS = {
    "anthropic": "claude-haiku-4-5",
    "openai": "gpt-4o",
    "gemini": "gemini-2.5-flash",
    "grok": "grok-3-mini",
}
# No commas: knobs are comma-separated, and Gemini's model travels in the URL path.
TEXT = (
    "Streams: café; naïve; Straße — 日本語のテキスト、中文字符 and 한국어. "
    "Emoji 🌍 👩\u200d💻 🇯🇵; combining e\u0301; math ∑ x² ≤ ∞."
)
WRONG_KEY = "sk-wrong-DO-NOT-PRINT-8c1d2e3f"


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ProviderSpec:
    """The vendor under test; the plugin's package is installed for this test only."""
    if request.param == PLUGIN:
        monkeypatch.syspath_prepend(str(PLUGIN_SITE))
        importlib.invalidate_caches()
    return registry.spec(request.param)


def model_of(vendor: ProviderSpec, **knobs: object) -> str:
    """The vendor's test model, with emulator knobs after ``~``."""
    base = MODELS.get(vendor.name) or vendor.default_model or "contract-model"
    if not knobs:
        return base
    quoted = {k: urllib.parse.quote(str(v), safe="") for k, v in knobs.items()}
    return base + "~" + ",".join(f"{k}={v}" for k, v in quoted.items())


def build(vendor: ProviderSpec, emulator: Emulator, **options: Any) -> Provider[Any]:
    options.setdefault("api_key", EMULATOR_KEY)
    return registry.provider(vendor.name, base_url=emulator.base_url(vendor.name), **options)


@pytest_asyncio.fixture
async def provider(vendor: ProviderSpec, emulator: Emulator) -> AsyncIterator[Provider[Any]]:
    built = build(vendor, emulator)
    yield built
    await built.aclose()


def only_done(events: list[StreamEvent]) -> DoneEvent:
    """The single ``done``, which must be the last event."""
    dones = [e for e in events if isinstance(e, DoneEvent)]
    assert len(dones) == 1, f"{len(dones)} done events"
    assert events[-1] is dones[0], "done is not the last event"
    return dones[0]


def causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# -- text, done, usage, reasoning ---------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3])
async def test_text_is_exact_across_multibyte_pieces_and_ends_with_one_done(
    provider: Provider[Any], vendor: ProviderSpec, chunk: int
) -> None:
    stream = provider.stream("Say it", model=model_of(vendor, reply=TEXT, chunk=chunk))
    events, error = await run(stream)
    assert error is None
    assert text_of(events) == TEXT
    done = only_done(events)
    assert done.provider == vendor.name
    assert done.finish_reason == "stop"


async def test_usage_adds_up(provider: Provider[Any], vendor: ProviderSpec) -> None:
    events, error = await run(provider.stream("Count to ten", model=model_of(vendor)))
    assert error is None
    usage = only_done(events).usage
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens >= sum(isinstance(e, TokenEvent) for e in events) > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 0 <= usage.reasoning_tokens <= usage.completion_tokens


async def test_max_tokens_ends_with_length(provider: Provider[Any], vendor: ProviderSpec) -> None:
    events, error = await run(provider.stream("Go on", model=model_of(vendor), max_tokens=5))
    assert error is None
    done = only_done(events)
    assert done.finish_reason == "length"
    assert done.usage.completion_tokens <= 5


async def test_reasoning_is_counted_and_never_mixed_into_the_text(
    provider: Provider[Any], vendor: ProviderSpec
) -> None:
    plain, _ = await run(provider.stream("Think", model=model_of(vendor, reasoning="off")))
    # The knob makes the emulator reason whatever the request asks (how a request asks
    # for reasoning is each vendor's own mapping, tested in tests/providers/).
    events, error = await run(provider.stream("Think", model=model_of(vendor, reasoning="on")))
    assert error is None
    usage = only_done(events).usage
    assert 0 < usage.reasoning_tokens <= usage.completion_tokens
    assert text_of(events) == text_of(plain)  # the same reply, no thinking in it
    thoughts = "".join(e.text for e in events if isinstance(e, ReasoningEvent))
    if thoughts:  # OpenAI's Chat Completions counts reasoning but does not stream it
        assert thoughts not in text_of(events)
        first_token = next(i for i, e in enumerate(events) if isinstance(e, TokenEvent))
        assert all(not isinstance(e, ReasoningEvent) for e in events[first_token:])


# -- the error rule book --------------------------------------------------------------------

BEFORE_THE_STREAM = [
    ("rate_limited", errors.RateLimitedError, True),
    ("overloaded", errors.OverloadedError, True),
    ("server_error", errors.ServerError, True),
    ("invalid_key", errors.AuthenticationError, False),
    ("invalid_request", errors.InvalidRequestError, False),
    ("context_too_long", errors.ContextTooLongError, False),
    ("model_not_found", errors.ModelNotFoundError, False),
]
# The status each protocol answers these faults with (as the real APIs do, per the
# captures): HTTP statuses, and gRPC code names for xAI. Gemini answers a wrong key 400.
STATUS = {
    "anthropic": (429, 529, 500, 401, 400, 400, 404),
    "openai": (429, 503, 500, 401, 400, 400, 404),
    "gemini": (429, 503, 500, 400, 400, 400, 404),
    "xai": (
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "INTERNAL",
        "UNAUTHENTICATED",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
    ),
}


@pytest.mark.parametrize(("fault", "cls", "retryable"), BEFORE_THE_STREAM)
async def test_each_failure_before_the_stream_is_the_rule_books_class(
    provider: Provider[Any],
    vendor: ProviderSpec,
    emulator: Emulator,
    fault: str,
    cls: type[errors.ProviderError],
    retryable: bool,
) -> None:
    knobs = model_of(vendor, fault=fault, retry_after=2.25)
    events, error = await run(provider.stream("Hi", model=knobs))
    assert events == []
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.provider == vendor.name
    assert vendor.emulator is not None
    assert error.status == STATUS[vendor.emulator][[f for f, *_ in BEFORE_THE_STREAM].index(fault)]
    assert error.retry_after == (2.25 if fault == "rate_limited" else None)
    assert error.__cause__ is not None  # the SDK's own exception
    assert len(emulator.requests) == 1  # no hidden retry inside the SDK


@pytest.mark.parametrize("fault", ["drop", "truncate"])
async def test_a_cut_stream_delivers_its_tokens_then_stream_interrupted(
    provider: Provider[Any], vendor: ProviderSpec, fault: str
) -> None:
    events, error = await run(provider.stream("Hi", model=model_of(vendor, fault=fault, after=4)))
    assert type(error) is errors.StreamInterruptedError
    assert error.retryable
    assert text_of(events)
    assert not any(isinstance(e, DoneEvent) for e in events)


async def test_an_error_mid_stream_comes_after_the_tokens_and_is_retryable(
    provider: Provider[Any], vendor: ProviderSpec
) -> None:
    events, error = await run(provider.stream("Hi", model=model_of(vendor, fault="error_event")))
    assert isinstance(error, errors.ServerError | errors.OverloadedError)
    assert error.retryable
    assert text_of(events)


async def test_a_stall_ends_at_the_read_timeout_as_stream_interrupted(
    vendor: ProviderSpec, emulator: Emulator
) -> None:
    provider = build(vendor, emulator, timeout=0.5)
    try:
        events, error = await run(provider.stream("Hi", model=model_of(vendor, fault="stall")))
    finally:
        await provider.aclose()
    assert type(error) is errors.StreamInterruptedError
    assert text_of(events)


async def test_an_unreachable_server_is_connection_failed(vendor: ProviderSpec) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    address = f"127.0.0.1:{port}" if vendor.emulator == "xai" else f"http://127.0.0.1:{port}"
    provider = registry.provider(vendor.name, api_key=EMULATOR_KEY, base_url=address, timeout=5)
    try:
        events, error = await run(provider.stream("Hi", model=model_of(vendor)))
    finally:
        await provider.aclose()
    assert events == []
    assert type(error) is errors.ConnectionFailedError
    assert error.retryable
    assert isinstance(error, errors.StreamInterruptedError)


async def test_the_key_is_never_in_an_error(vendor: ProviderSpec, emulator: Emulator) -> None:
    provider = build(vendor, emulator, api_key=WRONG_KEY)
    try:
        _, error = await run(provider.stream("Hi", model=model_of(vendor)))
    finally:
        await provider.aclose()
    assert type(error) is errors.AuthenticationError
    for link in causes(error):
        assert WRONG_KEY not in f"{link} {link!r}"
        assert WRONG_KEY[4:-4] not in f"{link} {link!r}"  # nor a masked echo of it
    assert WRONG_KEY not in repr(provider)


# -- cancel and resume ----------------------------------------------------------------------


async def test_disposing_the_subscription_closes_the_connection(
    provider: Provider[Any], vendor: ProviderSpec, emulator: Emulator
) -> None:
    third = asyncio.Event()
    tokens: list[StreamEvent] = []

    def on_next(event: StreamEvent) -> None:
        tokens.append(event)
        if len(tokens) == 3:
            third.set()

    stream = provider.stream("Hi", model=model_of(vendor, tps=100, words=5000), max_tokens=8_000)
    subscription = stream.subscribe(on_next=on_next)
    await asyncio.wait_for(third.wait(), 10)
    subscription.dispose()
    gone = await emulator.wait_for_disconnects_async(1)
    assert len(gone) == 1
    assert not gone[0].completed
    assert len(tokens) < 100


async def test_retry_on_interrupt_resumes_a_cut_reply_without_losing_or_repeating_text(
    provider: Provider[Any], vendor: ProviderSpec, emulator: Emulator
) -> None:
    cut = model_of(vendor, reply=TEXT, fault="drop", after=6, times=1)
    events, error = await run(provider.stream("Say it", model=cut).pipe(retry_on_interrupt(3)))
    assert error is None
    assert text_of(events) == TEXT
    done = only_done(events)
    assert done.details.get("attempts") == 2
    if rxllm_catalog.info(vendor.name, model_of(vendor)) is not None:
        assert done.usage.cost is not None  # summed over both attempts, still priced
        assert done.usage.cost > 0
    assert len(emulator.requests) == 2
    assert emulator.requests[1].body != emulator.requests[0].body  # a continuation, not a replay


# -- credentials ----------------------------------------------------------------------------


async def test_the_key_and_address_come_from_the_vendors_own_variables(
    vendor: ProviderSpec, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert vendor.base_url_env is not None
    for variable in vendor.key_env:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(vendor.key_env[0], EMULATOR_KEY)
    monkeypatch.setenv(vendor.base_url_env, emulator.base_url(vendor.name))
    bound = registry.model(f"{vendor.name}:{model_of(vendor)}")
    try:
        assert bound.provider.base_url == emulator.base_url(vendor.name)
        assert (await bound.complete("Hi", max_tokens=3)).usage.completion_tokens == 3
    finally:
        await bound.provider.aclose()
    assert emulator.requests[0].api_key == EMULATOR_KEY


def test_a_missing_key_is_refused_before_any_request_naming_the_variables(
    vendor: ProviderSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in vendor.key_env:
        monkeypatch.delenv(variable, raising=False)
    for variable in [name for name in os.environ if name.upper().startswith("RXLLM_")]:
        monkeypatch.delenv(variable)
    if not vendor.key_required:
        built = registry.provider(vendor.name, base_url="http://127.0.0.1:9/v1")
        assert built.api_key.get_secret_value() == ""  # a local server: none needed
        return
    with pytest.raises(errors.ConfigurationError) as raised:
        registry.provider(vendor.name)
    for variable in vendor.key_env:
        assert variable in str(raised.value)


# -- a misbehaving server, beside the emulator -----------------------------------------------

HTTP_VENDORS = [name for name in VENDORS if name == PLUGIN or registry.spec(name).emulator != "xai"]
MISBEHAVIOUR = {
    # A web page where the API belongs: a wrong base_url, a proxy, a captive portal.
    "html": ("text/html; charset=utf-8", b"<!doctype html><html><body>Welcome!</body></html>"),
    # An event stream whose event is not JSON.
    "malformed": ("text/event-stream", b"event: content_block_delta\ndata: {not json\n\n"),
}


@pytest_asyncio.fixture
async def misbehaving() -> AsyncIterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 that answers every request with ``MISBEHAVIOUR[<path's mode>]``:
    the mode is the first path segment, so one server serves both."""
    from aiohttp import web

    seen: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        mode = request.match_info["mode"]
        content_type, body = MISBEHAVIOUR[mode]
        return web.Response(status=200, body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_route("*", "/{mode}/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture(params=HTTP_VENDORS)
def http_vendor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ProviderSpec:
    if request.param == PLUGIN:
        monkeypatch.syspath_prepend(str(PLUGIN_SITE))
        importlib.invalidate_caches()
    return registry.spec(request.param)


@pytest.mark.parametrize(
    ("mode", "cls"),
    [("html", errors.UnexpectedResponseError), ("malformed", errors.StreamInterruptedError)],
)
async def test_a_server_that_is_not_the_api_is_the_rule_books_class(
    http_vendor: ProviderSpec,
    misbehaving: tuple[str, list[str]],
    mode: str,
    cls: type[errors.ProviderError],
) -> None:
    root, seen = misbehaving
    suffix = "/v1" if http_vendor.emulator == "openai" else ""
    provider = registry.provider(
        http_vendor.name, api_key=EMULATOR_KEY, base_url=f"{root}/{mode}{suffix}"
    )
    try:
        events, error = await run(provider.stream("Hi", model=model_of(http_vendor)))
    finally:
        await provider.aclose()
    assert len(seen) == 1  # it did reach the server, once
    assert events == []
    assert type(error) is cls
    assert error.retryable is (cls is errors.StreamInterruptedError)
    if mode == "html":
        assert "text/html" in str(error)
        assert "base_url" in str(error)
    else:
        assert "malformed event" in str(error)

"""Per-token client CPU of rxllm's providers vs. the official SDKs vs. a raw reader.

For each of the four providers, over rxllm's emulator, one run measures, interleaved
(round-robin over every variant, several rounds, medians reported):

- ``rxllm.events``: iterating ``provider.events(request)`` (the provider's hot path);
- ``rxllm.collect``: ``await rxllm.collect(provider.stream(request))`` (the Observable,
  the bridge and the fold on top);
- ``sdk``: iterating the official SDK's own stream (anthropic
  ``messages.create(stream=True)``, openai ``chat.completions.create(stream=True,
  stream_options={"include_usage": True})``, google-genai
  ``client.aio.models.generate_content_stream``, xai-sdk ``chat.stream()``);
- ``raw``: for the HTTP providers a plain aiohttp client reading the same server-sent
  events and ``json.loads``-ing each one; for Grok the generated gRPC stub on a bare
  ``grpc.aio`` channel (protobuf decoding only).
- ``litellm`` (only if installed by hand, never a dependency; not for Grok, which LiteLLM
  reaches over xAI's HTTP API, not the emulator's gRPC): iterating
  ``litellm.acompletion(..., stream=True)`` for ``openai/``, ``anthropic/``, ``gemini/``.

The emulator runs in its own process (``--emulator thread`` puts it on a thread of this
one), so the client CPU is ``time.process_time()`` of this process around one stream:
request, iteration, end. The same client objects are reused across rounds, as a real
application would, and a warm-up round is not counted. Each variant also streams a
one-word reply (the ``~words=1`` knob): its CPU is the per-request cost, and the
difference gives the marginal cost of one more token.

Also measured: the emulator's own speed, serving one long stream to the raw reader
(events/s of wall time, and its CPU per event).

Not a test: run it by hand::

    .venv/bin/python bench/bench_providers.py              # markdown table
    .venv/bin/python bench/bench_providers.py --json out.json --rounds 7 --words 4000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

import rxllm
from rxllm.request import StreamRequest
from rxllm.testing import EMULATOR_KEY

KEY = EMULATOR_KEY
PROMPT = "Tell me a long story about reactive streams."
PROVIDERS = ("anthropic", "openai", "gemini", "grok")
HTTP_PROVIDERS = ("anthropic", "openai", "gemini")
MODELS = {
    "anthropic": "claude-haiku-4-5",  # not on the SDK's deprecated list (no warning)
    "openai": "gpt-4.1",
    "gemini": "gemini-2.5-flash",
    "grok": "grok-4",
}
TARGET_RAW = 1.5  # rxllm within 1.5x of the raw reader (HTTP providers)
TARGET_COLLECT = 0.35  # issue 13: per token through rxllm.collect, at most 0.35x the raw reader
TARGET_REQUEST = 1.5  # issue 13: CPU per request (1-word reply) at most 1.5x the raw reader's
TARGET_SDK = {"openai": 4.0}  # rxllm at least 4x cheaper than the SDK's own iteration

Run = Callable[[], Awaitable[int]]  # one stream; returns the number of tokens it saw


# -- the emulator, in its own process (or on a thread) -----------------------------------


def _serve(conn: Connection, words: int) -> None:
    """The emulator process: serve until told to stop; answer CPU-time queries."""
    from rxllm.emulator import Emulator

    with Emulator(api_key=KEY, words=words) as emu:
        conn.send({d: emu.base_url(d) for d in ("anthropic", "openai", "gemini", "xai")})
        while True:
            message = conn.recv()
            if message == "cpu":
                conn.send(time.process_time())
            elif message == "requests":  # what bench_load.py checks after its cancels
                emu.wait_for_idle(10)
                seen = emu.requests
                conn.send(
                    {
                        "requests": len(seen),
                        "ended": sum(r.ended is not None for r in seen),
                        "disconnected": sum(r.disconnected for r in seen),
                        "completed": sum(r.completed for r in seen),
                    }
                )
                emu.reset()
            else:
                break
    conn.send("stopped")


class EmulatorHandle:
    """The emulator, as a child process (default) or a thread of this process."""

    def __init__(self, mode: str, words: int) -> None:
        self.mode = mode
        self.words = words
        self.urls: dict[str, str] = {}
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._emu: Any = None

    def __enter__(self) -> EmulatorHandle:
        if self.mode == "process":
            context = multiprocessing.get_context("spawn")
            ours, theirs = context.Pipe()
            self._process = context.Process(
                target=_serve, args=(theirs, self.words), name="rxllm-emulator", daemon=True
            )
            self._process.start()
            self._conn = ours
            deadline = time.monotonic() + 60
            while not ours.poll(0.2):
                if not self._process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the emulator process did not start")
            self.urls = ours.recv()
        else:
            from rxllm.emulator import Emulator

            self._emu = Emulator(api_key=KEY, words=self.words).__enter__()
            self.urls = {d: self._emu.base_url(d) for d in ("anthropic", "openai", "gemini", "xai")}
        return self

    def cpu(self) -> float | None:
        """The emulator process's CPU seconds so far (``None`` on a thread)."""
        if self._conn is None:
            return None
        self._conn.send("cpu")
        return float(self._conn.recv())

    def requests(self) -> dict[str, int] | None:
        """What the emulator process saw since the last call (then forgotten)."""
        if self._conn is None:
            return None
        self._conn.send("requests")
        return dict(self._conn.recv())

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None and self._process is not None:
            with contextlib.suppress(OSError, EOFError):
                self._conn.send("stop")
                self._conn.poll(10)
            self._process.join(10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
        if self._emu is not None:
            self._emu.__exit__(None, None, None)


# -- the variants ---------------------------------------------------------------------------


def _rxllm_provider(name: str, urls: dict[str, str]) -> Any:
    import rxllm

    return rxllm.provider(name, api_key=KEY, base_url=urls["xai" if name == "grok" else name])


class Clients:
    """The SDK clients and the raw readers' sessions, made once on the running loop."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self._closers: list[Callable[[], Awaitable[Any]]] = []

    def add_closer(self, closer: Callable[[], Awaitable[Any]]) -> None:
        self._closers.append(closer)

    async def aclose(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                await closer()


# Each ``*_variants`` makes its client once and returns, per variant, a function from a
# model name (which may carry emulator knobs after ``~``) to one stream's ``Run``.
Factory = Callable[[str], Run]


def rxllm_variants(name: str, clients: Clients) -> dict[str, Factory]:
    provider = _rxllm_provider(name, clients.urls)
    clients.add_closer(provider.aclose)
    token_type = rxllm.TokenEvent

    def events(model: str) -> Run:
        request = StreamRequest(model=model, prompt=PROMPT)

        async def run() -> int:
            tokens = 0
            async for event in provider.events(request):
                if type(event) is token_type:
                    tokens += 1
            return tokens

        return run

    def collect(model: str) -> Run:
        request = StreamRequest(model=model, prompt=PROMPT)

        async def run() -> int:
            result = await rxllm.collect(provider.stream(request))
            return result.usage.completion_tokens - result.usage.reasoning_tokens

        return run

    def subscribe(model: str) -> Run:
        request = StreamRequest(model=model, prompt=PROMPT)

        async def run() -> int:
            # The raw Observable path: subscribe on this loop, count in on_next.
            loop = asyncio.get_running_loop()
            ended: asyncio.Future[None] = loop.create_future()
            tokens = 0

            def on_next(event: Any) -> None:
                nonlocal tokens
                if type(event) is token_type:
                    tokens += 1

            def on_error(error: Exception) -> None:
                if not ended.done():
                    ended.set_exception(error)

            def on_completed() -> None:
                if not ended.done():
                    ended.set_result(None)

            provider.stream(request).subscribe(on_next, on_error, on_completed)
            await ended
            return tokens

        return run

    out: dict[str, Factory] = {"rxllm.events": events, "rxllm.subscribe": subscribe}
    if hasattr(rxllm, "collect"):  # the Observable, consumed through rxllm.consume
        out["rxllm.collect"] = collect
    return out


def gemini_sdk_client(url: str, key: str, add_closer: Callable[[Any], Any]) -> Any:
    """A google-genai client on its own aiohttp session (no retries), closed by ``add_closer``."""
    from google import genai
    from google.genai import types

    session = aiohttp.ClientSession()
    client = genai.Client(
        api_key=key,
        vertexai=False,
        http_options=types.HttpOptions(
            base_url=url,
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
            aiohttp_client=session,
        ),
    )
    add_closer(session.close)
    add_closer(client.aio.aclose)
    return client


def sdk_variant(name: str, clients: Clients) -> Factory:
    """Iterating the official SDK's own stream, as its documentation shows."""
    urls = clients.urls
    if name == "anthropic":
        import anthropic

        a_client = anthropic.AsyncAnthropic(api_key=KEY, base_url=urls["anthropic"], max_retries=0)
        clients.add_closer(a_client.close)

        def anthropic_run(model: str) -> Run:
            async def run() -> int:
                tokens = 0
                stream = await a_client.messages.create(
                    model=model,
                    max_tokens=64000,
                    messages=[{"role": "user", "content": PROMPT}],
                    stream=True,
                )
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        tokens += 1
                return tokens

            return run

        return anthropic_run
    if name == "openai":
        import openai

        o_client = openai.AsyncOpenAI(api_key=KEY, base_url=urls["openai"], max_retries=0)
        clients.add_closer(o_client.close)

        def openai_run(model: str) -> Run:
            async def run() -> int:
                tokens = 0
                stream = await o_client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": PROMPT}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        tokens += 1
                return tokens

            return run

        return openai_run
    if name == "gemini":
        g_client = gemini_sdk_client(urls["gemini"], KEY, clients.add_closer)

        def gemini_run(model: str) -> Run:
            async def run() -> int:
                tokens = 0
                stream = await g_client.aio.models.generate_content_stream(
                    model=model, contents=PROMPT
                )
                async for chunk in stream:
                    candidates = chunk.candidates
                    content = candidates[0].content if candidates else None
                    if content and content.parts and content.parts[0].text:
                        tokens += 1
                return tokens

            return run

        return gemini_run

    from xai_sdk import AsyncClient
    from xai_sdk.chat import user

    x_client = AsyncClient(
        api_key=KEY,
        api_host=urls["xai"],
        use_insecure_channel=True,
        channel_options=[("grpc.enable_retries", 0)],
    )
    clients.add_closer(x_client.close)

    def grok_run(model: str) -> Run:
        async def run() -> int:
            tokens = 0
            chat = x_client.chat.create(model=model, messages=[user(PROMPT)])
            async for _response, chunk in chat.stream():
                if chunk.content:
                    tokens += 1
            return tokens

        return run

    return grok_run


# LiteLLM (optional, never a dependency): its model prefix, and the path to add to the
# emulator's base URL so that LiteLLM's own route lands on the emulator's. LiteLLM's openai
# route is the OpenAI SDK on ``{api_base}/chat/completions``; its anthropic route appends
# ``/v1/messages`` to a bare host; its gemini route asks ``{api_base}/models/{m}:...``.
# No grok: LiteLLM's ``xai/`` speaks xAI's HTTP API, the emulator serves xAI's gRPC.
LITELLM_ROUTES = {
    "openai": ("openai", ""),
    "anthropic": ("anthropic", ""),
    "gemini": ("gemini", "/v1beta"),
}


def litellm_module() -> Any:
    """LiteLLM if installed (``None`` if not), kept offline: no cost map or other fetch."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    try:
        import litellm
    except ImportError:
        return None
    litellm.telemetry = False
    litellm.suppress_debug_info = True  # no "Provider List: ..." on stdout
    return litellm


def litellm_version() -> str | None:
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version("litellm")
    return None


def litellm_variant(name: str, clients: Clients, litellm: Any) -> Factory:
    """Iterating ``litellm.acompletion(..., stream=True)``'s chunks, as its docs show."""
    prefix, path = LITELLM_ROUTES[name]
    api_base = clients.urls[name] + path
    clients.add_closer(litellm.close_litellm_async_clients)

    def factory(model: str) -> Run:
        # A real model name for LiteLLM (it looks the model up for its cost and limits);
        # the emulator knobs go in the x-rxllm-emulator header instead.
        model, _, knobs = model.partition("~")
        extra: dict[str, Any] = {"extra_headers": {"x-rxllm-emulator": knobs}} if knobs else {}
        if name == "anthropic":
            extra["max_tokens"] = 64000  # as the SDK variant (LiteLLM's default is lower)

        async def run() -> int:
            tokens = 0
            before = asyncio.all_tasks()
            stream = await litellm.acompletion(
                model=f"{prefix}/{model}",
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                stream_options={"include_usage": True},
                api_base=api_base,
                api_key=KEY,
                num_retries=0,
                **extra,
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    tokens += 1
            # At the end of a stream LiteLLM schedules its success logging and cache
            # tasks on the loop: let them finish here, so their CPU counts for LiteLLM
            # rather than for whichever variant runs next.
            spawned = asyncio.all_tasks() - before - {asyncio.current_task()}
            if spawned:
                await asyncio.wait(spawned, timeout=5)
            return tokens

        return run

    return factory


_SSE_URL = {
    "anthropic": "{base}/v1/messages",
    "openai": "{base}/chat/completions",
    "gemini": "{base}/v1beta/models/{model}:streamGenerateContent?alt=sse",
}


def _raw_request(name: str, urls: dict[str, str], model: str) -> tuple[str, dict[str, str], bytes]:
    url = _SSE_URL[name].format(base=urls[name], model=model)
    headers = {"content-type": "application/json"}
    body: dict[str, Any]
    if name == "anthropic":
        headers |= {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
        body = {
            "model": model,
            "max_tokens": 64000,
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    elif name == "openai":
        headers["authorization"] = f"Bearer {KEY}"
        body = {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": PROMPT}],
        }
    else:
        headers["x-goog-api-key"] = KEY
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    return url, headers, json.dumps(body).encode()


def raw_variant(name: str, clients: Clients) -> Factory:
    """A plain reader: aiohttp for the HTTP providers, the bare gRPC stub for Grok."""
    if name == "grok":
        return _raw_grpc(clients)
    session = aiohttp.ClientSession()
    clients.add_closer(session.close)
    loads = json.loads

    def factory(model: str) -> Run:
        url, headers, body = _raw_request(name, clients.urls, model)

        async def run() -> int:
            tokens = 0
            async with session.post(url, data=body, headers=headers) as response:
                response.raise_for_status()
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    event = loads(data)
                    if name == "anthropic":
                        if event["type"] == "content_block_delta" and event["delta"].get("text"):
                            tokens += 1
                    elif name == "openai":
                        choices = event["choices"]
                        if choices and choices[0]["delta"].get("content"):
                            tokens += 1
                    else:
                        parts = event["candidates"][0]["content"].get("parts")
                        if parts and parts[0].get("text"):
                            tokens += 1
            return tokens

        return run

    return factory


def _raw_grpc(clients: Clients) -> Factory:
    import grpc
    from xai_sdk import AsyncClient
    from xai_sdk.chat import user
    from xai_sdk.proto import chat_pb2_grpc

    address = clients.urls["xai"]
    builder = AsyncClient(api_key=KEY, api_host=address, use_insecure_channel=True)
    clients.add_closer(builder.close)
    channel = grpc.aio.insecure_channel(address, options=[("grpc.enable_retries", 0)])
    clients.add_closer(channel.close)
    stub = chat_pb2_grpc.ChatStub(channel)
    metadata = (("authorization", f"Bearer {KEY}"),)

    def factory(model: str) -> Run:
        # The request proto as the SDK builds it, made once; then only the generated stub.
        request = builder.chat.create(model=model, messages=[user(PROMPT)])._make_request(1)

        async def run() -> int:
            tokens = 0
            async for chunk in stub.GetCompletionChunk(request, metadata=metadata):
                for output in chunk.outputs:
                    if output.delta.content:
                        tokens += 1
            return tokens

        return run

    return factory


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Sample:
    cpu: float  # client CPU seconds for the stream
    wall: float
    tokens: int


@dataclass
class Row:
    provider: str
    variant: str
    tokens: int
    us_per_token: float  # median client CPU per token of a --words reply
    tokens_per_s: float  # median tokens per second of wall time
    request_us: float  # median client CPU of a one-word reply: the per-request cost
    marginal_us_per_token: float  # (full - one-word) CPU / (full - one-word) tokens
    samples: list[dict[str, float]] = field(default_factory=list)
    tiny_samples: list[dict[str, float]] = field(default_factory=list)


async def measure(run: Run, clock: Callable[[], float]) -> Sample:
    wall0, cpu0 = time.perf_counter(), clock()
    tokens = await run()
    cpu1, wall1 = clock(), time.perf_counter()
    return Sample(cpu1 - cpu0, wall1 - wall0, tokens)


def _order(items: list[Any], shift: int) -> Iterator[Any]:
    """Rotate the round-robin each round, so no variant always follows the same one."""
    n = len(items)
    for i in range(n):
        yield items[(i + shift) % n]


TINY = "~words=1"  # the emulator knob for a one-word reply: what a request costs by itself

Key = tuple[str, str, str]  # provider, variant, "full" | "tiny"


async def bench(args: argparse.Namespace, emulator: EmulatorHandle) -> dict[str, Any]:
    clock = time.process_time if emulator.mode == "process" else time.thread_time
    clients = Clients(emulator.urls)
    runs: dict[Key, Run] = {}
    broken: dict[str, str] = {}
    litellm = litellm_module()
    for name in args.providers:
        try:
            factories = rxllm_variants(name, clients)
            factories["sdk"] = sdk_variant(name, clients)
            factories["raw"] = raw_variant(name, clients)
            if litellm is not None and name in LITELLM_ROUTES:
                factories["litellm"] = litellm_variant(name, clients, litellm)
            for variant, factory in factories.items():
                runs[name, variant, "full"] = factory(MODELS[name])
                runs[name, variant, "tiny"] = factory(MODELS[name] + TINY)
        except Exception as error:  # a missing SDK or provider: bench the rest
            broken[name] = f"{type(error).__name__}: {error}"
            for key in [k for k in runs if k[0] == name]:
                del runs[key]

    # Warm-up (not counted): connection pools, lazy imports, first-call caches.
    for key, run in list(runs.items()):
        try:
            await run()
        except Exception as error:
            broken["/".join(key[:2])] = f"{type(error).__name__}: {error}"
            for other in [k for k in runs if k[:2] == key[:2]]:
                runs.pop(other, None)

    # A full collection takes ~0.4 s with the four SDKs loaded: do it once, and move what
    # survives out of the collector's way. The collector stays on while measuring.
    gc.collect()
    gc.freeze()

    order = list(runs)
    samples: dict[Key, list[Sample]] = {key: [] for key in order}
    started = time.perf_counter()
    for round_no in range(args.rounds):
        for key in _order(order, round_no):
            samples[key].append(await measure(runs[key], clock))
    measured = time.perf_counter() - started

    emulator_speed = await emulator_events_per_s(args, emulator, clients)
    await clients.aclose()

    rows: list[Row] = []
    for (name, variant, size), got in samples.items():
        if size != "full":
            continue
        tiny = samples[name, variant, "tiny"]
        tokens = statistics.median(s.tokens for s in got)
        cpu, tiny_cpu = (
            statistics.median(s.cpu for s in got),
            statistics.median(s.cpu for s in tiny),
        )
        extra_tokens = max(1.0, tokens - statistics.median(s.tokens for s in tiny))
        rows.append(
            Row(
                provider=name,
                variant=variant,
                tokens=int(tokens),
                us_per_token=statistics.median(s.cpu / max(1, s.tokens) for s in got) * 1e6,
                tokens_per_s=statistics.median(s.tokens / s.wall for s in got),
                request_us=tiny_cpu * 1e6,
                marginal_us_per_token=(cpu - tiny_cpu) / extra_tokens * 1e6,
                samples=[asdict(s) for s in got],
                tiny_samples=[asdict(s) for s in tiny],
            )
        )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": {
            "rounds": args.rounds,
            "words": args.words,
            "emulator": args.emulator,
            "clock": "process_time" if emulator.mode == "process" else "thread_time",
        },
        "rows": [asdict(r) for r in rows],
        "ratios": ratios(rows),
        "emulator_speed": emulator_speed,
        "broken": broken,
        "litellm": litellm_version() if litellm is not None else None,
        "measured_seconds": round(measured, 1),
    }


async def emulator_events_per_s(
    args: argparse.Namespace, emulator: EmulatorHandle, clients: Clients
) -> dict[str, Any]:
    """One long stream (``--long-words``) per provider, read by the raw reader."""
    out: dict[str, Any] = {}
    for name in args.providers:
        # The raw reader, asking for a longer reply through the model-name knob.
        try:
            run = raw_variant(name, clients)(f"{MODELS[name]}~words={args.long_words}")
            cpu0, client0, wall0 = emulator.cpu(), time.process_time(), time.perf_counter()
            events = await run()
            wall, client = time.perf_counter() - wall0, time.process_time() - client0
            cpu1 = emulator.cpu()
        except Exception as error:
            out[name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        entry: dict[str, Any] = {
            "events": events,
            "events_per_s": events / wall,
            "reader_us_per_event": client / max(1, events) * 1e6,
        }
        if cpu0 is not None and cpu1 is not None:
            per_event = (cpu1 - cpu0) / max(1, events)
            entry["emulator_us_per_event"] = per_event * 1e6
            # What one core could serve if the emulator had it to itself.
            entry["emulator_events_per_cpu_s"] = 1 / per_event if per_event > 0 else None
        out[name] = entry
    return out


def ratios(rows: list[Row]) -> dict[str, dict[str, Any]]:
    by = {(r.provider, r.variant): r for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r.provider for r in rows):
        mine = by.get((name, "rxllm.events"))
        raw, sdk = by.get((name, "raw")), by.get((name, "sdk"))
        collect = by.get((name, "rxllm.collect"))
        entry: dict[str, Any] = {}
        if mine and raw:
            entry["rxllm_vs_raw"] = mine.us_per_token / raw.us_per_token
            if name in HTTP_PROVIDERS:
                entry["rxllm_vs_raw_target"] = TARGET_RAW
                entry["rxllm_vs_raw_met"] = entry["rxllm_vs_raw"] <= TARGET_RAW
        if mine and raw and raw.marginal_us_per_token > 0:
            entry["marginal_rxllm_vs_raw"] = mine.marginal_us_per_token / raw.marginal_us_per_token
        if collect and raw:
            entry["collect_vs_raw"] = collect.us_per_token / raw.us_per_token
            entry["request_vs_raw"] = collect.request_us / raw.request_us
            if name in HTTP_PROVIDERS:
                entry["collect_vs_raw_target"] = TARGET_COLLECT
                entry["collect_vs_raw_met"] = entry["collect_vs_raw"] <= TARGET_COLLECT
                entry["request_vs_raw_target"] = TARGET_REQUEST
                entry["request_vs_raw_met"] = entry["request_vs_raw"] <= TARGET_REQUEST
        subscribed = by.get((name, "rxllm.subscribe"))
        if subscribed and raw:
            entry["subscribe_vs_raw"] = subscribed.us_per_token / raw.us_per_token
        via_litellm = by.get((name, "litellm"))
        if via_litellm and collect:
            entry["litellm_vs_collect"] = via_litellm.us_per_token / collect.us_per_token
        if mine and sdk:
            entry["sdk_vs_rxllm"] = sdk.us_per_token / mine.us_per_token
            if name in TARGET_SDK:
                entry["sdk_vs_rxllm_target"] = TARGET_SDK[name]
                entry["sdk_vs_rxllm_met"] = entry["sdk_vs_rxllm"] >= TARGET_SDK[name]
        out[name] = entry
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = (
        f", load average before the run {os.getloadavg()[0]:.1f}"
        if hasattr(os, "getloadavg")
        else ""
    )
    return (
        f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}{load}"
    )


# -- reporting ------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"Date {report['date']}; {report['machine']}.",
        f"Emulator in its own {settings['emulator']}; {settings['rounds']} rounds, "
        f"~{settings['words']} words per reply; medians; client CPU = "
        f"`time.{settings['clock']}()`.",
        "",
        "| provider | variant | tokens | client CPU µs/token | tokens/s "
        "| CPU per request, 1-word reply (µs) | marginal µs/token |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['provider']} | {row['variant']} | {row['tokens']} "
            f"| {row['us_per_token']:.1f} | {row['tokens_per_s']:,.0f} "
            f"| {row['request_us']:,.0f} | {row['marginal_us_per_token']:.1f} |"
        )
    lines += [
        "",
        "| provider | rxllm.events / raw | marginal rxllm / raw | rxllm.subscribe / raw "
        "| rxllm.collect / raw (target ≤ 0.35x) | request: collect / raw (target ≤ 1.5x) "
        "| SDK / rxllm | LiteLLM / rxllm.collect |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report["ratios"].items():
        vs_raw = _ratio(entry, "rxllm_vs_raw", "rxllm_vs_raw_met")
        collect = _ratio(entry, "collect_vs_raw", "collect_vs_raw_met")
        request = _ratio(entry, "request_vs_raw", "request_vs_raw_met")
        subscribed = f"{entry['subscribe_vs_raw']:.2f}x" if "subscribe_vs_raw" in entry else "-"
        vs_sdk = _ratio(entry, "sdk_vs_rxllm", "sdk_vs_rxllm_met")
        if "sdk_vs_rxllm_target" in entry:
            vs_sdk += f" (target ≥ {entry['sdk_vs_rxllm_target']:g}x)"
        if name == "grok":
            vs_raw += " (raw = bare gRPC stub; no target)"
        marginal = (
            f"{entry['marginal_rxllm_vs_raw']:.2f}x" if "marginal_rxllm_vs_raw" in entry else "-"
        )
        via_litellm = (
            f"{entry['litellm_vs_collect']:.2f}x"
            if "litellm_vs_collect" in entry
            else "\N{EN DASH}"
        )
        lines.append(
            f"| {name} | {vs_raw} | {marginal} | {subscribed} | {collect} | {request} "
            f"| {vs_sdk} | {via_litellm} |"
        )
    lines += [
        "",
        "| emulator, one long stream | events | events/s (wall) | emulator CPU µs/event "
        "| events per emulator CPU-second | reader CPU µs/event |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report["emulator_speed"].items():
        if "error" in entry:
            lines.append(f"| {name} | - | {entry['error']} | - |")
            continue
        cpu, capacity = entry.get("emulator_us_per_event"), entry.get("emulator_events_per_cpu_s")
        lines.append(
            f"| {name} | {entry['events']} | {entry['events_per_s']:,.0f} "
            f"| {'-' if cpu is None else f'{cpu:.1f}'} "
            f"| {'-' if capacity is None else f'{capacity:,.0f}'} "
            f"| {entry['reader_us_per_event']:.1f} |"
        )
    if report.get("litellm"):
        lines += [
            "",
            f"litellm: {report['litellm']} (installed by hand for this run; no grok: LiteLLM "
            "speaks xAI's HTTP API, the emulator serves xAI's gRPC).",
        ]
    else:
        lines += ["", "litellm: not installed"]
    if report["broken"]:
        lines += ["", "Not benched:"]
        lines += [f"- {what}: {why}" for what, why in report["broken"].items()]
    return "\n".join(lines)


def _ratio(entry: dict[str, Any], key: str, met: str) -> str:
    if key not in entry:
        return "-"
    mark = {True: " ✅", False: " ❌"}.get(entry.get(met), "")
    return f"{entry[key]:.2f}x{mark}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument(
        "--words", type=int, default=2000, help="words per reply (default 2000, ~3500 tokens)"
    )
    parser.add_argument(
        "--long-words",
        type=int,
        default=8000,
        help="words of the one long stream that times the emulator (default 8000)",
    )
    parser.add_argument(
        "--providers",
        nargs="+",
        choices=PROVIDERS,
        default=list(PROVIDERS),
        help="which providers (default: all four)",
    )
    parser.add_argument(
        "--emulator",
        choices=("process", "thread"),
        default="process",
        help="run the emulator in its own process (default) or on a thread of this one",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the report as JSON ('-': stdout)"
    )
    args = parser.parse_args(argv)

    note = machine()  # before starting: the load average is other work on the machine
    started = time.perf_counter()
    with EmulatorHandle(args.emulator, args.words) as emulator:
        report = asyncio.run(bench(args, emulator))
    report = {"machine": note, **report}
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(markdown(report))
        print(f"\n(total {report['total_seconds']} s)")
        if args.json:
            with open(args.json, "w") as out:
                json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixed client CPU per request: ways of sending one streamed request (issue 13).

Issue 13 asks that a request's fixed cost (client CPU from subscribe to the end of a
one-token reply) be at most 1.5x a raw reader's. This measures, per HTTP vendor
(OpenAI, Anthropic, Gemini) over rxllm's emulator, the client CPU of one streamed
request with a one-word reply (``~words=1``), read to the end, sent each of these ways:

- ``raw.aiohttp``: a plain aiohttp POST (the floor; ``bench_providers.raw_variant``);
- ``raw.aiohttp+framer``: the same, the body read per network read (``iter_any``)
  through the framer every other variant uses (the like-for-like floor);
- ``raw.httpx2``: an ``httpx2.AsyncClient`` posting the same bytes and iterating
  ``aiter_raw()``: the HTTP stack the openai/anthropic SDKs use, by itself;
- ``sdk.*``: the SDK's calls, from the documented one down to the lowest that still
  adds the SDK's authentication and raises its typed status errors:

  - openai / anthropic: ``sdk.create`` (``create(stream=True)`` iterated, pydantic
    chunks), ``sdk.streaming`` (``with_streaming_response.create``, body read raw:
    what rxllm did before), ``sdk.post`` (``client.post(path, body=...,
    cast_to=httpx2.Response, stream=True)``: the whole request pipeline with its
    retry loop and status errors, no body transform and no response wrapper: what
    rxllm does now, ``rxllm/providers/_post.py``),
    ``sdk.send`` (``_build_request`` + ``_send_request``/``_attempt_request``, the
    status error made by the SDK's own ``_make_status_error_from_response``),
    ``sdk.post/aiohttp`` (``sdk.post`` on ``http_client=DefaultAioHttpClient()``);
  - gemini: ``sdk.create`` (``generate_content_stream``), ``sdk.rxllm`` (the provider's
    path for a request that is not text-only: ``_GenerateContentParameters_to_mldev`` +
    ``_build_request`` + ``_async_request_once``), ``sdk.convert+retry`` (the same request,
    sent by ``_async_request``: in the SDK's one-attempt tenacity loop),
    ``sdk.build+once`` (``_build_request`` on the API dict + ``_async_request_once``: what
    rxllm does for a text-only request), ``sdk.once`` (the ``HttpRequest`` built once,
    only ``_async_request_once`` per request);

- ``rxllm.events`` / ``rxllm.collect``: rxllm's provider as it is.

Every variant but the SDK's own iteration reads the body the same way (rxllm's
:class:`~rxllm.providers._sse.SSEFramer`, ``json.loads`` per event), so the differences
are the sending. The emulator runs in its own spawned process; client CPU is
``time.process_time()`` around one request; variants are interleaved round-robin over
several rounds (a warm-up round not counted); medians are reported.

It also checks which variants raise a typed error on a 401 (wrong key) and a 429 (the
emulator's ``fault=rate_limited`` knob), and with ``--profile`` prints a cProfile of
the SDK call rxllm uses, per vendor (and of Gemini's whole provider path).

Not a test: run it by hand::

    .venv/bin/python bench/bench_request.py                  # markdown table
    .venv/bin/python bench/bench_request.py --rounds 40 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_providers as bp

import rxllm
from rxllm.providers._sse import SSEFramer
from rxllm.request import StreamRequest

KEY = bp.KEY
WRONG_KEY = "sk-wrong-key"
PROMPT = bp.PROMPT
VENDORS = ("openai", "anthropic", "gemini")
MODELS = {name: bp.MODELS[name] for name in VENDORS}
TINY = "~words=1"
RATE_LIMITED = "~fault=rate_limited"
PATHS = {"openai": "/chat/completions", "anthropic": "/v1/messages"}

Run = Callable[[], Awaitable[int]]  # one request, read to the end; returns tokens seen
Factory = Callable[[str], Run]  # model name (with knobs) -> one request


# -- reading a body the same way everywhere ------------------------------------------------


def _counter(name: str) -> Callable[[bytes], int]:
    """Tokens in one SSE event's data (1 or 0), parsed with ``json.loads``."""
    loads = json.loads

    def openai(data: bytes) -> int:
        if data[:6] == b"[DONE]":
            return 0
        choices = loads(data).get("choices")
        return 1 if choices and choices[0]["delta"].get("content") else 0

    def anthropic(data: bytes) -> int:
        event = loads(data)
        return 1 if event["type"] == "content_block_delta" and event["delta"].get("text") else 0

    def gemini(data: bytes) -> int:
        parts = loads(data)["candidates"][0]["content"].get("parts")
        return 1 if parts and parts[0].get("text") else 0

    return {"openai": openai, "anthropic": anthropic, "gemini": gemini}[name]


async def _read(reads: AsyncIterator[bytes], count: Callable[[bytes], int]) -> int:
    framer = SSEFramer()
    tokens = 0
    async for read in reads:
        for _, data in framer.feed(read):
            tokens += count(data)
    return tokens


# -- the variants ---------------------------------------------------------------------------


class Closers:
    def __init__(self) -> None:
        self._closers: list[Callable[[], Awaitable[Any]]] = []

    def add(self, closer: Callable[[], Awaitable[Any]]) -> None:
        self._closers.append(closer)

    async def aclose(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                await closer()


def _body(name: str, model: str) -> dict[str, Any]:
    return json.loads(bp._raw_request(name, {name: "http://x"}, model)[2])


def raw_httpx2(name: str, urls: dict[str, str], key: str, closers: Closers) -> Factory:
    client = httpx2.AsyncClient(timeout=httpx2.Timeout(60.0))
    closers.add(client.aclose)
    count = _counter(name)

    def factory(model: str) -> Run:
        url, headers, body = bp._raw_request(name, urls, model)
        headers = {k: v.replace(KEY, key) for k, v in headers.items()}

        async def run() -> int:
            request = client.build_request("POST", url, content=body, headers=headers)
            response = await client.send(request, stream=True)
            try:
                response.raise_for_status()
                return await _read(response.aiter_raw(), count)
            finally:
                await response.aclose()

        return run

    return factory


def raw_aiohttp(name: str, urls: dict[str, str], key: str, closers: Closers) -> Factory:
    if key == KEY:  # the floor, exactly as bench_providers measures it
        clients = bp.Clients(urls)
        closers.add(clients.aclose)
        return bp.raw_variant(name, clients)
    session = aiohttp.ClientSession()
    closers.add(session.close)

    def factory(model: str) -> Run:
        url, headers, body = bp._raw_request(name, urls, model)
        headers = {k: v.replace(KEY, key) for k, v in headers.items()}

        async def run() -> int:
            async with session.post(url, data=body, headers=headers) as response:
                response.raise_for_status()
                return 0

        return run

    return factory


def raw_aiohttp_framed(name: str, urls: dict[str, str], key: str, closers: Closers) -> Factory:
    """aiohttp, the body read per network read through the same framer as the rest."""
    session = aiohttp.ClientSession()
    closers.add(session.close)
    count = _counter(name)

    def factory(model: str) -> Run:
        url, headers, body = bp._raw_request(name, urls, model)
        headers = {k: v.replace(KEY, key) for k, v in headers.items()}

        async def run() -> int:
            async with session.post(url, data=body, headers=headers) as response:
                response.raise_for_status()
                return await _read(response.content.iter_any(), count)

        return run

    return factory


def stainless_variants(
    name: str, urls: dict[str, str], key: str, closers: Closers
) -> dict[str, Factory]:
    """openai and anthropic: the same generated (Stainless) client underneath."""
    if name == "openai":
        import openai as sdk
        from openai._models import FinalRequestOptions

        client: Any = sdk.AsyncOpenAI(api_key=key, base_url=urls[name], max_retries=0)
    else:
        import anthropic as sdk  # type: ignore[no-redef]
        from anthropic._models import FinalRequestOptions  # type: ignore[no-redef]

        client = sdk.AsyncAnthropic(api_key=key, base_url=urls[name], max_retries=0)
    closers.add(client.close)
    count = _counter(name)
    path = PATHS[name]
    resource = client.chat.completions if name == "openai" else client.messages

    def create(model: str) -> Run:
        params = _body(name, model)

        async def run() -> int:
            tokens = 0
            stream = await resource.create(**params)
            async for chunk in stream:
                if name == "openai":
                    tokens += bool(chunk.choices and chunk.choices[0].delta.content)
                else:
                    tokens += (
                        chunk.type == "content_block_delta" and chunk.delta.type == "text_delta"
                    )
            return tokens

        return run

    def streaming(model: str) -> Run:
        params = _body(name, model)

        async def run() -> int:
            async with resource.with_streaming_response.create(**params) as response:
                return await _read(response.http_response.aiter_raw(), count)

        return run

    def post_on(sdk_client: Any) -> Factory:
        def post(model: str) -> Run:
            params = _body(name, model)

            async def run() -> int:
                # The whole request pipeline (auth, retry loop, typed status errors); the
                # open httpx2.Response back, unwrapped.
                response = await sdk_client.post(
                    path, body=params, cast_to=httpx2.Response, stream=True
                )
                try:
                    return await _read(response.aiter_raw(), count)
                finally:
                    await response.aclose()

            return run

        return post

    def send(model: str) -> Run:
        params = _body(name, model)

        if name == "openai":

            async def attempt(options: Any) -> httpx2.Response:
                request = client._build_request(options)
                return await client._send_request(request, stream=True)  # type: ignore[no-any-return]
        else:

            async def attempt(options: Any) -> httpx2.Response:
                response, _ = await client._attempt_request(options, stream=True)
                return response  # type: ignore[no-any-return]

        async def run() -> int:
            options = FinalRequestOptions.construct(method="post", url=path, json_data=params)
            response = await attempt(options)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    raise client._make_status_error_from_response(response)
                return await _read(response.aiter_raw(), count)
            finally:
                await response.aclose()

        return run

    # The same lowest call on the SDK's aiohttp transport (``DefaultAioHttpClient``).
    aio: Any = type(client)(
        api_key=key, base_url=urls[name], max_retries=0, http_client=sdk.DefaultAioHttpClient()
    )
    closers.add(aio.close)

    return {
        "sdk.create": create,
        "sdk.streaming": streaming,
        "sdk.post": post_on(client),
        "sdk.send": send,
        "sdk.post/aiohttp": post_on(aio),
    }


def gemini_variants(urls: dict[str, str], key: str, closers: Closers) -> dict[str, Factory]:
    from google.genai import types

    from rxllm.providers import gemini as rx_gemini

    client = bp.gemini_sdk_client(urls["gemini"], key, closers.add)
    api = client._api_client
    count = _counter("gemini")
    contents = [types.Content(role="user", parts=[types.Part(text=PROMPT)])]

    async def read(response: Any) -> int:
        stream = response.response_stream  # an aiohttp.ClientResponse
        try:
            return await _read(stream.content.iter_any(), count)
        finally:
            stream.release()

    def create(model: str) -> Run:
        async def run() -> int:
            tokens = 0
            stream = await client.aio.models.generate_content_stream(model=model, contents=PROMPT)
            async for chunk in stream:
                candidates = chunk.candidates
                content = candidates[0].content if candidates else None
                tokens += bool(content and content.parts and content.parts[0].text)
            return tokens

        return run

    def rxllm_path(model: str) -> Run:
        config = types.GenerateContentConfig()

        async def run() -> int:
            request = rx_gemini._raw_request(client, model, contents, config)
            return await read(await rx_gemini._send_raw(client, request))

        return run

    def convert_retry(model: str) -> Run:
        config = types.GenerateContentConfig()

        async def run() -> int:
            request = rx_gemini._raw_request(client, model, contents, config)
            return await read(await api._async_request(http_request=request, stream=True))

        return run

    def build_once(model: str) -> Run:
        path = f"models/{model}:streamGenerateContent?alt=sse"
        body = _body("gemini", model)

        async def run() -> int:
            request = api._build_request("post", path, dict(body))
            return await read(await api._async_request_once(request, stream=True))

        return run

    def once(model: str) -> Run:
        path = f"models/{model}:streamGenerateContent?alt=sse"
        request = api._build_request("post", path, _body("gemini", model))

        async def run() -> int:
            return await read(await api._async_request_once(request, stream=True))

        return run

    return {
        "sdk.create": create,
        "sdk.rxllm": rxllm_path,
        "sdk.convert+retry": convert_retry,
        "sdk.build+once": build_once,
        "sdk.once": once,
    }


def rxllm_variants(
    name: str, urls: dict[str, str], key: str, closers: Closers
) -> dict[str, Factory]:
    provider = rxllm.provider(name, api_key=key, base_url=urls[name])
    closers.add(provider.aclose)
    token = rxllm.TokenEvent

    def events(model: str) -> Run:
        request = StreamRequest(model=model, prompt=PROMPT)

        async def run() -> int:
            tokens = 0
            async for event in provider.events(request):
                tokens += type(event) is token
            return tokens

        return run

    def collect(model: str) -> Run:
        request = StreamRequest(model=model, prompt=PROMPT)

        async def run() -> int:
            result = await rxllm.collect(provider.stream(request))
            return result.usage.completion_tokens

        return run

    return {"rxllm.events": events, "rxllm.collect": collect}


def variants(name: str, urls: dict[str, str], key: str, closers: Closers) -> dict[str, Factory]:
    out = {
        "raw.aiohttp": raw_aiohttp(name, urls, key, closers),
        "raw.aiohttp+framer": raw_aiohttp_framed(name, urls, key, closers),
        "raw.httpx2": raw_httpx2(name, urls, key, closers),
    }
    if name == "gemini":
        out |= gemini_variants(urls, key, closers)
    else:
        out |= stainless_variants(name, urls, key, closers)
    out |= rxllm_variants(name, urls, key, closers)
    return out


# -- measuring ------------------------------------------------------------------------------


async def cpu_per_request(
    runs: dict[tuple[str, str], Run], rounds: int
) -> dict[tuple[str, str], list[float]]:
    for run in runs.values():  # warm-up: pools, lazy imports, first-call caches
        await run()
    gc.collect()
    gc.freeze()
    order = list(runs)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in order}
    clock = time.process_time
    for round_no in range(rounds):
        for i in range(len(order)):
            key = order[(i + round_no) % len(order)]
            run = runs[key]
            cpu0 = clock()
            await run()
            samples[key].append(clock() - cpu0)
    return samples


def _typed(name: str, variant: str, error: BaseException) -> bool:
    """Is ``error`` the SDK's (or rxllm's) typed status error?"""
    if variant.startswith("rxllm."):
        return isinstance(error, rxllm.errors.ProviderError)
    if variant.startswith("raw."):
        return False
    if name == "openai":
        import openai

        return isinstance(error, openai.APIStatusError)
    if name == "anthropic":
        import anthropic

        return isinstance(error, anthropic.APIStatusError)
    from google.genai import errors as genai_errors

    return isinstance(error, genai_errors.APIError)


async def error_checks(urls: dict[str, str], closers: Closers) -> dict[tuple[str, str], str]:
    """Per variant: what a 401 (wrong key) and a 429 (``fault=rate_limited``) raise."""
    out: dict[tuple[str, str], str] = {}
    for name in VENDORS:
        good = variants(name, urls, KEY, closers)
        wrong = variants(name, urls, WRONG_KEY, closers)
        for variant in good:
            cells = []
            for label, factory, model in (
                ("401", wrong[variant], MODELS[name]),
                ("429", good[variant], MODELS[name] + RATE_LIMITED),
            ):
                try:
                    await factory(model)()
                except Exception as error:
                    response = getattr(error, "response", None)
                    status = (
                        getattr(error, "status_code", None)
                        or getattr(error, "status", None)
                        or getattr(response, "status_code", None)
                    )
                    mark = "✅" if _typed(name, variant, error) else "❌"
                    cells.append(
                        f"{label}: {mark} `{type(error).__module__.split('.')[0]}."
                        f"{type(error).__name__}` ({status})"
                    )
                else:
                    cells.append(f"{label}: ❌ no error")
            out[name, variant] = "; ".join(cells)
    return out


async def profile(name: str, run: Run, n: int) -> str:
    """cProfile of ``n`` requests: the top entries by cumulative time."""
    for _ in range(n):  # warm
        await run()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        await run()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(45)
    text = out.getvalue()
    return f"### {name}: {n} requests\n\n```\n{text[text.find('   ncalls') :].rstrip()}\n```"


def markdown(
    samples: dict[tuple[str, str], list[float]],
    checks: dict[tuple[str, str], str],
    rounds: int,
) -> str:
    lines = [
        f"Client CPU per one-word streamed request (`time.process_time`), median of {rounds} "
        "rounds, emulator in its own process.",
        "",
        "| vendor | way of sending | µs CPU / request | ratio to raw.aiohttp | 401 / 429 raise |",
        "|---|---|---:|---:|---|",
    ]
    for name in VENDORS:
        floor = statistics.median(samples[name, "raw.aiohttp"])
        for (vendor, variant), got in samples.items():
            if vendor != name:
                continue
            cpu = statistics.median(got)
            lines.append(
                f"| {name} | {variant} | {cpu * 1e6:,.0f} | {cpu / floor:.2f}x "
                f"| {checks.get((name, variant), '-')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds (default 30)")
    parser.add_argument("--profile", action="store_true", help="also cProfile the SDK calls")
    parser.add_argument("--profile-n", type=int, default=300, help="requests per profile")
    parser.add_argument("--no-errors", action="store_true", help="skip the 401/429 checks")
    args = parser.parse_args(argv)

    with bp.EmulatorHandle("process", words=1) as emulator:
        urls = {name: emulator.urls[name] for name in VENDORS}
        asyncio.run(bench(args, urls))
    return 0


async def bench(args: argparse.Namespace, urls: dict[str, str]) -> None:
    closers = Closers()
    try:
        runs: dict[tuple[str, str], Run] = {}
        for name in VENDORS:
            for variant, factory in variants(name, urls, KEY, closers).items():
                runs[name, variant] = factory(MODELS[name] + TINY)
        samples = await cpu_per_request(runs, args.rounds)
        checks = {} if args.no_errors else await error_checks(urls, closers)
        print(markdown(samples, checks, args.rounds), flush=True)
        if args.profile:
            targets = [
                ("openai", "sdk.post"),
                ("anthropic", "sdk.post"),
                ("gemini", "sdk.rxllm"),
                ("gemini", "rxllm.events"),
            ]
            for name, variant in targets:
                print()
                print(await profile(f"{name} {variant}", runs[name, variant], args.profile_n))
    finally:
        await closers.aclose()


if __name__ == "__main__":
    sys.exit(main())

"""The ``Emulator``: one aiohttp server (Anthropic, OpenAI, Gemini under path prefixes)
and one gRPC server (xAI), both on 127.0.0.1, free ports."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

from aiohttp import web

from .. import registry
from ..errors import ConfigurationError
from . import _anthropic, _gemini, _openai, _xai
from ._behaviour import Behaviour
from ._state import Dialect, EmulatorState, RecordedRequest

__all__ = ["Emulator"]

HOST = "127.0.0.1"
_HTTP_DIALECTS = {"anthropic": _anthropic, "openai": _openai, "gemini": _gemini}
"""The HTTP dialects, each served under ``/<dialect>``; ``xai`` is gRPC on its own port."""
# base_url means what each SDK means by it: OpenAI's includes /v1, the others add their version.
_BASE_SUFFIX = {"anthropic": "", "openai": "/v1", "gemini": ""}


class Emulator:
    """A local server speaking the four providers' wire protocols, with injected faults.

    Example:
        >>> async with Emulator() as emu:
        ...     client = anthropic.AsyncAnthropic(base_url=emu.base_url("anthropic"), api_key="k")
        ...
        >>> with Emulator(api_key="secret") as emu:   # blocking form: a background thread
        ...     print(emu.env())

    Args:
        api_key: the key every request must present; ``None`` accepts any non-empty key.
        ttft, tps, chunk, words, reasoning: default pacing and content knobs
            (see ``rxllm.emulator._behaviour`` for per-request overrides).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        ttft: float = 0.0,
        tps: float = 0.0,
        chunk: int = 1,
        words: int = 60,
        reasoning: bool | None = None,
        port: int = 0,
        grpc_port: int = 0,
    ) -> None:
        self.state = EmulatorState(
            api_key=api_key,
            defaults=Behaviour(ttft=ttft, tps=tps, chunk=chunk, words=words, reasoning=reasoning),
        )
        self._want_port = port
        self._want_grpc_port = grpc_port
        self._runner: web.AppRunner | None = None
        self._xai: _xai.XaiServer | None = None
        self.port = 0
        self.grpc_port = 0
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # -- addresses --------------------------------------------------------------------------

    def base_url(self, vendor: Dialect | str) -> str:
        """The ``base_url`` to give a vendor's SDK: by dialect (``"anthropic"``, ``"openai"``,
        ``"gemini"``, ``"xai"``) or by any registered vendor with an emulator dialect
        (``"grok"``, ``"claude"``, ``"ollama"``...). For xAI, the gRPC ``host:port``."""
        dialect = vendor if vendor in (*_HTTP_DIALECTS, "xai") else _dialect_of(vendor)
        if dialect == "xai":
            return self.xai_address
        return f"http://{HOST}:{self.port}/{dialect}{_BASE_SUFFIX[dialect]}"

    @property
    def xai_address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point rxllm (and the SDKs) at this emulator: each
        registered vendor's base URL and key variables, for every vendor it can serve."""
        key = self.state.api_key or "emulator-key"
        found: dict[str, str] = {}
        for spec in registry.specs():
            if spec.emulator is None:
                continue
            if spec.base_url_env:
                found[spec.base_url_env] = self.base_url(spec.emulator)
            if spec.key_env:
                found[spec.key_env[0]] = key
        return found

    # -- what it saw ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self.state.requests)

    @property
    def disconnects(self) -> list[RecordedRequest]:
        """Requests whose client went away before the stream ended."""
        return [r for r in self.state.requests if r.disconnected]

    def wait_for_disconnects(self, count: int = 1, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until ``count`` disconnects were recorded (or ``timeout``); return them all."""
        self.state.wait_until(lambda: len(self.disconnects) >= count, timeout)
        return self.disconnects

    async def wait_for_disconnects_async(
        self,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for a thread wait, same as the sync form
    ) -> list[RecordedRequest]:
        """``wait_for_disconnects`` for async code (does not block the loop)."""
        return await asyncio.to_thread(self.wait_for_disconnects, count, timeout)

    def wait_for_idle(self, timeout: float = 10.0) -> bool:
        """Block until every recorded request has ended."""
        return self.state.wait_until(
            lambda: all(r.ended is not None for r in self.state.requests), timeout
        )

    def reset(self) -> None:
        """Forget recorded requests and fault counters."""
        self.state.reset()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve on 127.0.0.1; if any part fails to start, what had started is stopped."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        app = web.Application()
        for dialect, module in _HTTP_DIALECTS.items():
            sub = web.Application()
            sub.add_routes(module.routes(self.state))
            app.add_subapp(f"/{dialect}", sub)
        # handler_cancellation: a client that disconnects cancels its handler at once,
        # which is how a stalled stream notices it was abandoned.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(self._runner, HOST, self._want_port)
        await site.start()
        self.port = _bound_port(site)
        self._xai = await _xai.start(self.state, HOST, self._want_grpc_port)
        self.grpc_port = self._xai.port

    async def stop(self) -> None:
        if self._xai is not None:
            await self._xai.stop()
            self._xai = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self) -> Emulator:
        """Run the emulator on a background thread with its own event loop."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())  # stops what it started if it fails
            except BaseException as error:  # re-raised in the caller
                failure.append(error)
            else:
                started.set()
                loop.run_forever()
                loop.run_until_complete(self.stop())
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                started.set()

        thread = threading.Thread(target=run, name="rxllm-emulator", daemon=True)
        thread.start()
        started.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._thread_loop = loop
        self._thread = thread
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread_loop is not None and self._thread is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
            self._thread_loop = None

    def __repr__(self) -> str:
        return f"<Emulator http://{HOST}:{self.port} grpc={self.xai_address}>"


def _dialect_of(vendor: str) -> str:
    try:
        dialect = registry.spec(vendor).emulator
    except ConfigurationError as error:
        raise ValueError(f"unknown dialect or vendor {vendor!r}: {error}") from None
    if dialect is None:
        raise ValueError(f"the emulator has no dialect for {vendor!r}")
    return dialect


def _bound_port(site: web.TCPSite) -> int:
    server: Any = site._server  # aiohttp exposes no bound-port accessor
    return int(server.sockets[0].getsockname()[1])

"""Sending a streamed request through an SDK client's public ``post``; reading its body.

Why not the SDK's ``create``: for a request rxllm built itself (plain JSON), ``create``
adds work and nothing else. OpenAI's walks the whole body against its ``TypedDict``
annotations (``async_maybe_transform``, ~0.3 ms a request, and an identity for what rxllm
sends: ``tests/providers/test_openai.py`` checks it), and both wrap the response in an
``AsyncAPIResponse`` rxllm unwraps again. ``client.post(path, body=..., cast_to=
httpx2.Response, stream=True)`` is the SDK's documented way to call an endpoint directly:
the same authentication, headers, retries setting and typed status errors
(``openai.RateLimitError``...), and the open response back (``bench/bench_request.py``
measured the saving: ~0.5 ms a request on OpenAI, ~0.25 ms on Anthropic).

A parameter ``create`` would treat itself (not copy into the body) sends the request
through ``create`` as before, and so does one it does not know: the SDK's ``TypeError``
for it stays the error the caller sees, before anything is sent.

The body is then read by :func:`body_reads` (the response's byte stream itself when
nothing needs decoding) and, after the last event, :func:`drain` reads the chunked
terminator so the connection is reused (what the SDKs' ``drain_response_async`` does,
without its private import and its per-chunk checkpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, cast

import httpx2

__all__ = ["StreamingPost", "body_reads", "drain"]

# ``create``'s keyword → the request option ``post`` takes it as (``make_request_options``).
_REQUEST_OPTIONS: Mapping[str, str] = {
    "extra_headers": "headers",
    "extra_query": "params",
    "extra_body": "extra_json",
    "timeout": "timeout",
}


class StreamingPost:
    """A streamed ``POST path`` with the parameters of the SDK method ``create``.

    Args:
        create: the SDK's method for the endpoint (its signature says which parameters
            go into the body as they are).
        path: the endpoint, as ``create`` posts it.
        special: parameters of ``create`` that do not go into the body as they are.
        options: request options ``create`` always passes (OpenAI's ``security``).
    """

    def __init__(
        self,
        create: Callable[..., Any],
        path: str,
        *,
        special: frozenset[str] = frozenset(),
        options: Mapping[str, Any] | None = None,
    ) -> None:
        parameters = set(inspect.signature(create).parameters) - {"self"}
        self.path = path
        self._body = frozenset(parameters - set(_REQUEST_OPTIONS) - special)
        self._takes = self._body | _REQUEST_OPTIONS.keys()
        self._options = dict(options or {})

    def takes(self, params: Mapping[str, Any]) -> bool:
        """Whether ``post`` can send ``params`` as ``create`` would."""
        return params.keys() <= self._takes

    def split(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``params`` (as :meth:`takes` accepts) as ``post``'s body and request options."""
        body = {k: v for k, v in params.items() if k in self._body}
        options = dict(self._options)
        for key, option in _REQUEST_OPTIONS.items():
            # As make_request_options: a None is no option, but timeout=None is "none".
            if key in params and (params[key] is not None or key == "timeout"):
                options[option] = params[key]
        return body, options

    @contextlib.asynccontextmanager
    async def open(
        self, client: Any, params: Mapping[str, Any], create: Callable[..., Any]
    ) -> AsyncIterator[httpx2.Response]:
        """The open streamed response for ``params``, closed on leaving the block.

        ``create`` is the SDK's ``with_streaming_response.create`` of the same endpoint,
        used for parameters ``post`` cannot send as it would.
        """
        if not self.takes(params):
            async with create(**params) as wrapped:
                yield wrapped.http_response
            return
        body, options = self.split(params)
        response: httpx2.Response = await client.post(
            self.path, body=body, options=options, cast_to=httpx2.Response, stream=True
        )
        try:
            yield response
        finally:
            await response.aclose()


def body_reads(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body of ``response``, a network read at a time.

    When no ``Content-Encoding`` needs decoding (event streams are sent plain), the
    response's own byte stream: ``aiter_bytes`` is that stream under two more generators
    (``aiter_raw``, then the decoder), which every read and every wait for the network
    passes through. Transport errors stay ``httpx2``'s (the transport maps them below).
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return response.aiter_bytes()
    return cast(AsyncIterable[bytes], response.stream).__aiter__()


async def drain(reads: AsyncIterator[bytes], limit: float = 0.1) -> None:
    """Read what is left of a body after its last event (the chunked terminator), for at
    most ``limit`` seconds, so that its connection goes back to the pool instead of being
    closed, as the SDKs' own streams do. Nothing here fails the reply: it is complete."""
    with contextlib.suppress(TimeoutError, httpx2.HTTPError, httpx2.StreamError):
        async with asyncio.timeout(limit):
            async for _ in reads:
                pass

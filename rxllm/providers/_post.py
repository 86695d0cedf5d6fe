"""Sending a streamed request through an SDK client's public ``post``.

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
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx2

__all__ = ["StreamingPost"]

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
            value = params.get(key)
            if value is not None:
                options[option] = value
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

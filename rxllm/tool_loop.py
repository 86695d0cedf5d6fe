"""``run_tools``: model → tools → model, until the model answers, as one stream.

Each round streams the model's reply; when it stops to call tools
(``finish_reason`` ``tool_calls``), rxllm runs the calls' functions (all of a
round's calls at once; sync functions in a worker thread), emits one
``tool_result`` event per call, sends the results back, and streams the next
round. The Observable carries every round's events, in order, and ends with one
``done``: the last round's finish reason and model, the usage summed over the
rounds, and ``details["tool_rounds"]`` (how many replies were streamed).

It ends early, keeping what streamed, when:

- ``max_rounds`` replies have been streamed and the last still calls tools:
  ``finish_reason`` stays ``tool_calls`` and ``details["tool_rounds_exhausted"]``
  is true;
- the model calls a tool that has no function (offered only): the call is left
  to the caller, ``details["tool_calls_pending"]`` lists their ids.

A tool that raises (or whose arguments do not validate) does not end the loop:
its error goes back to the model as the call's result (``is_error``), which
lets the model correct itself. Vendor-side tools (``server_side`` calls) are
never run here; their results are already in the vendor's reply.

Operators compose with the whole loop: ``timeout``, ``take_tokens`` and
``cancel_when`` piped on it stop every round, closing the connection that is
open. Operators for each round's request (``retry_on_interrupt``) go in
``operators=``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pydantic
from reactivex import Observable

from .bridge import from_async_iterable
from .consume import aiter  # noqa: A004 - rxllm.aiter
from .events import (
    DoneEvent,
    FinishReason,
    StreamEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
)
from .provider import Provider, StreamOperator
from .request import Message, StreamRequest
from .tools import Tool, ToolCall, result_text

__all__ = ["run_tools"]

log = logging.getLogger(__name__)

DEFAULT_MAX_ROUNDS = 8


def run_tools(
    model: Any,
    request: StreamRequest | str | None = None,
    /,
    *,
    tools: Sequence[Any],
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    operators: Sequence[StreamOperator] = (),
    **fields: Any,
) -> Observable[StreamEvent]:
    """A cold stream of the whole tool loop for ``request`` (see the module docstring).

    Args:
        model: ``"provider:model"``, a bound model (``rxllm.model(...)``, a
            ``connect(...)`` entry), or a provider (the model then comes from
            ``model=`` or the provider's default). Positional, so ``model=`` is
            the request field.
        request: the prompt, or a request; any request field as a keyword.
        tools: tools with functions to run (``@rxllm.tool`` functions, typed
            functions, :class:`~rxllm.tools.Tool`\\ s).
        max_rounds: the most replies to stream (at least 1).
        operators: piped onto each round's stream (e.g. ``retry_on_interrupt(3)``).

    Raises:
        ValueError: bad input, at once (before any request).

    Example:
        >>> @rxllm.tool
        ... def get_weather(city: str) -> str:
        ...     "The weather now."
        ...     return f"12°C in {city}"
        >>> result = await rxllm.collect(
        ...     rxllm.run_tools("openai:gpt-5-mini", "Weather in Oslo?", tools=[get_weather]))
        >>> result.text
    """
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise ValueError(f"run_tools: max_rounds must be >= 1, got {max_rounds!r}")
    if not tools:
        raise ValueError("run_tools needs tools=[...]")
    provider, first = _bind(model, request, tools=tools, fields=fields)
    by_name = {t.name: t for t in first.tools}

    def rounds() -> AsyncIterator[StreamEvent]:
        return _rounds(provider, first, by_name, max_rounds, operators)

    return from_async_iterable(rounds)


def _bind(
    model: Any, request: StreamRequest | str | None, *, tools: Sequence[Any], fields: dict[str, Any]
) -> tuple[Provider[Any], StreamRequest]:
    from .registry import BoundModel
    from .registry import model as bind

    bound: Any = bind(model) if isinstance(model, str) else model
    fields = {**fields, "tools": tuple(tools)}
    if isinstance(bound, BoundModel):
        return bound.provider, bound.request(request, **fields)
    if isinstance(bound, Provider):
        return bound, bound.request(request, **fields)
    raise ValueError(
        "run_tools: model must be a 'provider:model' string, a bound model or a provider, "
        f"got {type(model).__name__}"
    )


async def _rounds(
    provider: Provider[Any],
    request: StreamRequest,
    tools: Mapping[str, Tool],
    max_rounds: int,
    operators: Sequence[StreamOperator],
) -> AsyncIterator[StreamEvent]:
    usage = Usage(cost=0.0)
    for number in range(1, max_rounds + 1):
        stream: Observable[StreamEvent] = provider.stream(request)
        for operator in operators:
            stream = operator(stream)
        text: list[str] = []
        calls: list[ToolCallEvent] = []
        done: DoneEvent | None = None
        async with aiter(stream) as events:
            async for event in events:
                if isinstance(event, DoneEvent):
                    done = event
                    continue
                if isinstance(event, TokenEvent):
                    text.append(event.text)
                elif isinstance(event, ToolCallEvent):
                    calls.append(event)
                yield event
        if done is None:  # every rxllm stream ends with one; collect() says so too
            return
        usage = usage + done.usage
        local = [call for call in calls if not call.server_side]
        details: dict[str, Any] = {**done.details, "tool_rounds": number}
        if done.finish_reason is not FinishReason.TOOL_CALLS or not local:
            yield _final(done, usage, details)
            return
        pending = [
            call.id for call in local if call.name in tools and tools[call.name].function is None
        ]
        if pending:
            details["tool_calls_pending"] = pending
            yield _final(done, usage, details)
            return
        if number == max_rounds:
            details["tool_rounds_exhausted"] = True
            yield _final(done, usage, details)
            return
        results = await asyncio.gather(*(_run(call, tools) for call in local))
        for result in results:
            yield result
        turns = (
            Message("assistant", "".join(text), tool_calls=tuple(ToolCall.of(c) for c in local)),
            *(
                Message.tool_result(r.id, r.content, name=r.name, is_error=r.is_error)
                for r in results
            ),
        )
        systems = tuple(m for m in request.messages if m.role == "system")
        request = request.replace(prompt=None, messages=(*systems, *request.conversation(), *turns))


async def _run(call: ToolCallEvent, tools: Mapping[str, Tool]) -> ToolResultEvent:
    """Run one call; its error, not an exception, when it fails (the model is told)."""
    chosen = tools.get(call.name)
    if chosen is None:
        known = ", ".join(tools) or "none"
        return ToolResultEvent(
            call.id,
            call.name,
            f"Error: there is no tool named {call.name!r} (tools: {known})",
            True,
        )
    try:
        value = await chosen.call(call.arguments)
    except pydantic.ValidationError as error:
        return ToolResultEvent(
            call.id, call.name, f"Error: invalid arguments for {call.name}: {error}", True
        )
    except Exception as error:  # the tool's failure is the model's to handle
        log.warning(
            "tool %s (call %s) raised %s: %s", call.name, call.id, type(error).__name__, error
        )
        return ToolResultEvent(call.id, call.name, f"Error: {type(error).__name__}: {error}", True)
    return ToolResultEvent(call.id, call.name, result_text(value))


def _final(done: DoneEvent, usage: Usage, details: dict[str, Any]) -> DoneEvent:
    return DoneEvent(
        usage=usage,
        finish_reason=done.finish_reason,
        model=done.model,
        provider=done.provider,
        details=details,
    )

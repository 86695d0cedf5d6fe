"""The usage of a stream that an operator ends early, so that usage is never lost.

A provider's ``done`` carries the real usage, but an operator that cuts a
stream short (``take_tokens``, ``timeout``, ``cancel_when``) disposes the
stream before that ``done`` arrives. It emits its own ``done`` instead, with
an estimate: one completion token per token or reasoning event seen, and,
when the source is an :class:`~rxllm.stream.LLMStream`, the prompt estimated
from its request (about four characters per token). The estimate is marked
``details["usage_estimated"] = True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reactivex import Observable

from ..events import DoneEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent, Usage
from ..request import StreamRequest
from ..stream import LLMStream

__all__ = ["UsageSoFar", "estimate_prompt_tokens"]

_CHARS_PER_TOKEN = 4


def estimate_prompt_tokens(request: StreamRequest) -> int:
    """About how many tokens ``request``'s prompt is (system prompt and every turn)."""
    chars = len(request.system_prompt() or "")
    chars += sum(len(message.content) for message in request.conversation())
    return chars // _CHARS_PER_TOKEN


class UsageSoFar:
    """Counts what one subscription has seen, to build the ``done`` of an early end."""

    def __init__(self, source: Observable[StreamEvent]) -> None:
        self._request: StreamRequest | None = None
        self._provider = ""
        if isinstance(source, LLMStream):
            self._request = source.request
            self._provider = source.provider.name
        self.tokens = 0
        self.reasoning = 0
        self.done_seen = False
        """True once the source's own ``done`` passed: its usage is the real one."""

    def see(self, event: StreamEvent) -> None:
        if isinstance(event, TokenEvent):
            self.tokens += 1
        elif isinstance(event, ReasoningEvent):
            self.reasoning += 1
        elif isinstance(event, DoneEvent):
            self.done_seen = True

    def done(
        self,
        finish_reason: FinishReason,
        *,
        requested: bool = True,
        details: Mapping[str, Any] | None = None,
    ) -> DoneEvent:
        """The ``done`` for ending now; ``requested=False`` when no request was ever made."""
        prompt = 0
        model = ""
        if self._request is not None:
            model = self._request.model
            if requested:
                prompt = estimate_prompt_tokens(self._request)
        usage = Usage(
            prompt_tokens=prompt,
            completion_tokens=self.tokens + self.reasoning,
            reasoning_tokens=self.reasoning,
        )
        return DoneEvent(
            usage=usage,
            finish_reason=finish_reason,
            model=model,
            provider=self._provider,
            details={"usage_estimated": True, **(details or {})},
        )

"""``LLMStreamStep``: a flow step that streams one reply into the context (the seed's)."""

from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from typing import Any, Final

from reactivex import Observable
from reactivex.subject import Subject

from .. import consume, errors, registry
from ..events import DoneEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent
from ..operators import batch_tokens, cancel_when
from ..operators import timeout as total_timeout
from ..provider import StreamOperator
from ..redaction import redact
from ..request import StreamRequest
from ..scheduling import positive_seconds
from ..usage import UsageTracker
from ._context import Context
from ._flow import abort_signal, current_usage_tracker

__all__ = ["DEFAULT_TIMEOUT", "PARTIAL_INTERVAL", "LLMStreamStep"]

logger = logging.getLogger("rxllm.flow")

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds for a whole stream unless the step or the context says otherwise: the plan's
``timeout`` of ``'30000'`` (it counts milliseconds; rxllm counts seconds everywhere)."""

PARTIAL_INTERVAL: Final = 0.1
"""Seconds between ``partial_response`` updates at most (10 a second): tokens are
batched (``batch_tokens(max_interval=...)``), so a watcher redraws a few times a
second rather than once per token, and no token waits longer than this."""


class LLMStreamStep:
    """Stream one reply into the context: the seed's ``LLMStreamStep``, on rxllm's streams.

    What it reads from the context (the plan's keys):

    - ``prompt`` (``prompt_key``), or the ``prompt=`` template filled from the context
      (``"Review this code:\\n{code}"``);
    - ``timeout``: seconds for the whole stream, a number (default
      :data:`DEFAULT_TIMEOUT`, 30, the plan's ``'30000'`` ms; the step's ``timeout=``
      when the context has none; ``timeout=None`` on the step: no deadline);
    - ``system``: a system prompt, over the step's ``system=``;
    - ``model``: a model id on the step's provider, over the step's model.

    What it writes:

    - ``partial_response``: the text so far, while it streams, at most every
      :data:`PARTIAL_INTERVAL` seconds (0.1) and once more with the last tokens;
    - ``final_response`` (``output_key``): the whole text, when the stream ended of itself;
    - ``usage`` (a :class:`~rxllm.Usage`), ``finish_reason``, ``stream_aborted`` (a bool;
      the plan's ``'true'``), and ``error`` (a message, keys masked) when it failed.

    The stream is ``model.stream(request)`` through ``operators``, then
    ``timeout(total=...)``, ``cancel_when(abort)`` and ``batch_tokens``; its usage counts
    in the running flow's tracker (or ``tracker=``) under ``tag`` (default: the name).

    **On a timeout or an abort it returns False; it does not raise.** The plan's
    version rethrows. Here a deadline or a stop button is a planned way for a step to
    end, not a fault: the partial text stays in ``partial_response``,
    ``stream_aborted`` is set, the flow stops at this step and reports it as stopped
    (or aborted) by name, and the connection is closed. Any other error (rate
    limited, authentication, a dropped connection) is logged through ``logging``
    (``rxllm.flow``), kept in ``error`` and raised: the flow reports the step as
    failed, with the error.

    :meth:`abort` stops it from any thread; so does :meth:`Flow.abort
    <rxllm.flow.Flow.abort>` on the flow running it.

    Example:
        >>> step = LLMStreamStep(claude, timeout=60, operators=[take_tokens(500)],
        ...                      system="Answer in one paragraph.")
        >>> context = Context(prompt="What is a cold observable?")
        >>> await step.execute(context), context["final_response"]
    """

    observes_abort = True
    """It stops its stream on the flow's abort itself (see :class:`~rxllm.flow.Step`)."""

    def __init__(
        self,
        model: registry.BoundModel | str,
        *,
        prompt_key: str = "prompt",
        output_key: str = "final_response",
        prompt: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        operators: Sequence[StreamOperator] = (),
        system: str | None = None,
        name: str | None = None,
        tracker: UsageTracker | None = None,
        tag: str | None = None,
        partial_interval: float = PARTIAL_INTERVAL,
        **fields: Any,
    ) -> None:
        """
        Args:
            model: a bound model (``rxllm.model(...)``, ``connect``), or a
                ``"provider:model"`` string bound with :func:`rxllm.model`.
            prompt_key: where the prompt is read from.
            output_key: where the whole reply is written.
            prompt: a template (``str.format`` fields are context keys) used instead of
                ``prompt_key``.
            timeout: seconds for the whole stream when the context has no ``timeout``.
            operators: piped onto the stream, in order (``take_tokens(200)``,
                ``retry_on_interrupt(3)``).
            system: the system prompt when the context has none.
            name: the step's name in reports (default: the model's ``provider:model``).
            tracker: where usage counts (default: the running flow's).
            tag: the usage tag (default: ``name``).
            partial_interval: seconds between ``partial_response`` updates at most.
            fields: request fields (``max_tokens``, ``temperature``, ``reasoning``...).

        Raises:
            ValueError, TypeError: a bad field, timeout or interval, before any request.
        """
        self.model = registry.model(model) if isinstance(model, str) else model
        self.prompt_key = prompt_key
        self.output_key = output_key
        self.prompt = prompt
        self.timeout = None if timeout is None else positive_seconds(timeout, "timeout=")
        self.operators = tuple(operators)
        self.system = system
        self.name: str = name or self.model.spec
        self.tracker = tracker
        self.tag = tag or self.name
        self.partial_interval = positive_seconds(partial_interval, "partial_interval=")
        self.fields = fields
        self.model.request("check", **fields)  # a bad field fails here, not mid-flow
        self._abort: Subject[Any] = Subject()

    def abort(self) -> None:
        """Stop the stream this step is running now (from any thread); its partial text stays."""
        self._abort.on_next(None)

    def request(self, context: Context) -> StreamRequest:
        """The request this step sends for ``context``.

        Raises:
            ValueError: the context lacks the prompt (or a key the template names).
        """
        fields = dict(self.fields)
        system = context.get("system") or self.system
        if system is not None:
            fields["system"] = system
        if context.get("model"):
            fields["model"] = context["model"]
        return self.model.request(self._prompt(context), **fields)

    def stream(self, context: Context) -> Observable[StreamEvent]:
        """The stream this step runs for ``context``, with every operator it adds."""
        limit = self._timeout(context)
        pipeline = list(self.operators)
        if limit is not None:
            pipeline.append(total_timeout(total=limit))
        flow_abort = abort_signal()
        triggers = [self._abort] if flow_abort is None else [self._abort, flow_abort]
        pipeline.append(cancel_when(*triggers))
        pipeline.append(batch_tokens(max_interval=self.partial_interval))
        tracker = self.tracker or current_usage_tracker()
        if tracker is not None:
            pipeline.append(tracker.track(tag=self.tag))
        # The provider's stream: the bound model would put its own model back over the context's.
        return self.model.provider.stream(self.request(context)).pipe(*pipeline)

    async def execute(self, context: Context) -> bool:
        stream = self.stream(context)  # bad input raises here, before any request
        text: list[str] = []
        reasoning: list[str] = []
        done: DoneEvent | None = None
        context["stream_aborted"] = False
        context["partial_response"] = ""
        try:
            async with consume.aiter(stream) as events:
                async for event in events:
                    if isinstance(event, TokenEvent):
                        text.append(event.text)
                        context["partial_response"] = "".join(text)
                    elif isinstance(event, ReasoningEvent):
                        reasoning.append(event.text)
                    elif isinstance(event, DoneEvent):
                        done = event
        except errors.TimeoutError as error:
            self._finish(context, done, reasoning)
            self._stopped(context, error)
            return False
        except Exception as error:
            self._finish(context, done, reasoning)
            context["error"] = redact(f"{type(error).__name__}: {error}")
            logger.error("step %r: the stream failed: %s", self.name, context["error"])
            raise
        self._finish(context, done, reasoning)
        if done is not None and done.finish_reason is FinishReason.CANCELLED:
            self._stopped(context, None)
            return False
        context[self.output_key] = "".join(text)
        return True

    def _finish(self, context: Context, done: DoneEvent | None, reasoning: list[str]) -> None:
        if reasoning:
            context["reasoning"] = "".join(reasoning)
        if done is not None:
            context["usage"] = done.usage
            context["finish_reason"] = str(done.finish_reason)

    def _stopped(self, context: Context, error: Exception | None) -> None:
        context["stream_aborted"] = True
        why = "aborted" if error is None else redact(f"{type(error).__name__}: {error}")
        context["error"] = why
        logger.info(
            "step %r: the stream was stopped (%s); %d characters kept in partial_response",
            self.name,
            why,
            len(context.get("partial_response", "")),
        )

    def _prompt(self, context: Context) -> str:
        if self.prompt is None:
            prompt = context.get(self.prompt_key)
            if not isinstance(prompt, str) or not prompt:
                raise ValueError(
                    f"step {self.name!r} reads its prompt from context[{self.prompt_key!r}], "
                    f"which is {'missing' if prompt is None else repr(prompt)}"
                )
            return prompt
        try:
            return self.prompt.format_map(context)
        except KeyError as missing:
            raise ValueError(
                f"step {self.name!r}: the prompt template needs context[{missing.args[0]!r}], "
                f"which is missing (the context has: {', '.join(context) or 'nothing'})"
            ) from None

    def _timeout(self, context: Context) -> float | None:
        value = context.get("timeout")
        if value is None:
            return self.timeout
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            # A string is refused rather than parsed: the plan's '30000' meant milliseconds.
            raise ValueError(
                f"step {self.name!r}: context['timeout'] must be seconds as a number "
                f"(e.g. 30; the plan's '30000' was milliseconds), got {value!r}"
            )
        return positive_seconds(float(value), "context['timeout']")

    def __repr__(self) -> str:
        return f"LLMStreamStep({self.name!r}, {self.prompt_key!r} -> {self.output_key!r})"

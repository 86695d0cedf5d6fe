"""``LLMStream``: the cold Observable of one request to one provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeAlias

from reactivex import Observable, abc

from .bridge import from_async_iterable
from .events import StreamEvent
from .request import StreamRequest

__all__ = ["EventSource", "LLMStream", "StreamStage"]


class EventSource(Protocol):
    """What an ``LLMStream`` streams from: a :class:`~rxllm.provider.Provider`, in practice."""

    @property
    def name(self) -> str:
        """The vendor's registry name."""

    def events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        """The events of one request, ending with exactly one ``DoneEvent``."""


StreamStage: TypeAlias = Callable[[Observable[StreamEvent], int], Observable[StreamEvent]]
"""An operator stage kept on a resumable stream: ``(source, token_events_before) -> stream``.

``token_events_before`` is how many token events earlier attempts already delivered
(0 for the first attempt), so a stage such as ``take_tokens`` can keep one budget
across a resumed stream."""


class LLMStream(Observable[StreamEvent]):
    """What ``Provider.stream`` returns: an ``Observable[StreamEvent]`` that knows its request.

    Nothing happens until it is subscribed; every subscription is a new request,
    and disposing one closes its connection. Because it carries its provider and
    request, operators such as ``retry_on_interrupt`` can ask the same provider
    to continue a cut stream (:meth:`continued`).
    """

    def __init__(self, provider: EventSource, request: StreamRequest) -> None:
        super().__init__()
        self.provider = provider
        self.request = request
        self._source = from_async_iterable(lambda: provider.events(request))

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[StreamEvent],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        return self._source.subscribe(observer, scheduler=scheduler)

    def continued(self, partial: str, *, tokens_used: int = 0, token_events: int = 0) -> LLMStream:
        """The stream that continues this one after ``partial`` text was already received.

        The request gains an assistant prefill of ``partial``; ``max_tokens`` shrinks
        by ``tokens_used`` so that the whole reply keeps its original budget.
        ``token_events`` (how many token events were delivered) is for the stages
        added with :meth:`through`.
        """
        request = self.request.continued(partial)
        if request.max_tokens is not None and tokens_used:
            request = request.replace(max_tokens=max(1, request.max_tokens - tokens_used))
        return LLMStream(self.provider, request)

    def through(self, stage: StreamStage) -> LLMStream:
        """This stream with an operator stage applied, still an ``LLMStream``.

        Operators that act on one attempt (``timeout``, ``take_tokens``,
        ``batch_tokens``, ``rate_limit``) use this, so that
        ``stream.pipe(timeout(idle=5), retry_on_interrupt(3))`` can still ask the
        provider to continue a cut reply: the continuation gets the same stages.
        """
        return _StagedStream(self, stage, 0)

    def __repr__(self) -> str:
        return f"<LLMStream {self.provider.name}:{self.request.model}>"


class _StagedStream(LLMStream):
    """An ``LLMStream`` seen through one more operator stage (see :meth:`LLMStream.through`)."""

    def __init__(self, inner: LLMStream, stage: StreamStage, token_events_before: int) -> None:
        Observable.__init__(self)
        self.provider = inner.provider
        self.request = inner.request
        self._inner = inner
        self._stage = stage
        self._staged = stage(inner, token_events_before)
        self._before = token_events_before

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[StreamEvent],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        return self._staged.subscribe(observer, scheduler=scheduler)

    def continued(self, partial: str, *, tokens_used: int = 0, token_events: int = 0) -> LLMStream:
        inner = self._inner.continued(partial, tokens_used=tokens_used, token_events=token_events)
        return _StagedStream(inner, self._stage, token_events)


def staged(
    stage: StreamStage,
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """An operator for ``.pipe``: kept as a stage on an ``LLMStream``, applied once elsewhere."""

    def operator(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        if isinstance(source, LLMStream):
            return source.through(stage)
        return stage(source, 0)

    return operator

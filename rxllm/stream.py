"""``LLMStream``: the cold Observable of one request to one provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc

from ._bridge import from_async_iterable
from .events import StreamEvent
from .request import StreamRequest

if TYPE_CHECKING:
    from .provider import Provider

__all__ = ["LLMStream"]


class LLMStream(Observable[StreamEvent]):
    """What ``Provider.stream`` returns: an ``Observable[StreamEvent]`` that knows its request.

    Nothing happens until it is subscribed; every subscription is a new request,
    and disposing one closes its connection. Because it carries its provider and
    request, operators such as ``retry_on_interrupt`` can ask the same provider
    to continue a cut stream (:meth:`continued`).
    """

    def __init__(self, provider: Provider[Any], request: StreamRequest) -> None:
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

    def continued(self, partial: str, *, tokens_used: int = 0) -> LLMStream:
        """The stream that continues this one after ``partial`` text was already received.

        The request gains an assistant prefill of ``partial``; ``max_tokens`` shrinks
        by ``tokens_used`` so that the whole reply keeps its original budget.
        """
        request = self.request.continued(partial)
        if request.max_tokens is not None and tokens_used:
            request = request.replace(max_tokens=max(1, request.max_tokens - tokens_used))
        return LLMStream(self.provider, request)

    def __repr__(self) -> str:
        return f"<LLMStream {self.provider.name}:{self.request.model}>"

"""``LLMStream``: the cold Observable of one request to one provider."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, get_args

from reactivex import Observable, abc

from .bridge import subscriber
from .events import StreamEvent
from .request import StreamRequest

__all__ = ["EventSource", "LLMStream", "NotResumableWarning", "StreamStage"]


class NotResumableWarning(UserWarning):
    """A retry had to send a request again from the start instead of continuing it.

    Issued (once per subscription) by ``retry_on_interrupt`` when an operator
    placed before it changed the event type (``ops.map(lambda e: e.text)``,
    ``ops.buffer_with_count(5)``): the continuation cannot be asked for, so the
    reply is replayed and what was already delivered is delivered again. Put
    that operator after ``retry_on_interrupt``.
    """


class EventSource(Protocol):
    """What an ``LLMStream`` streams from: a :class:`~rxllm.provider.Provider`, in practice."""

    @property
    def name(self) -> str:
        """The vendor's registry name."""

    def events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        """The events of one request, ending with exactly one ``DoneEvent``.

        A source may also have ``batches(request)``: the same events, a sequence per
        network read (as :meth:`rxllm.provider.Provider.batches`). An ``LLMStream``
        iterates that instead when it is there.
        """


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
        # A provider that hands over its events a network read at a time is iterated
        # that way (the await is paid per read); any other source one event at a time.
        # The bridge's subscribe function is this Observable's own (no inner Observable,
        # so no second observer wrapped around the subscriber's).
        batches = getattr(provider, "batches", None)
        if batches is not None:
            super().__init__(subscriber(lambda: batches(request), batched=True))
        else:
            super().__init__(subscriber(lambda: provider.events(request), batched=False))
        self.provider = provider
        self.request = request

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

    def around(
        self, operator: Callable[[Observable[StreamEvent]], Observable[StreamEvent]]
    ) -> LLMStream:
        """This stream with an operator applied to the whole of it, still an ``LLMStream``.

        For operators that must see the whole stream (``retry_on_interrupt``):
        what is piped after them still knows the provider and request (so a
        ``take_tokens`` after a retry reports them), and a continuation is the
        operator applied to this stream's continuation.
        """
        return _WholeStream(self, operator)

    @property
    def not_resumable_because(self) -> str | None:
        """The operator that changed the event type (so a retry cannot continue), if any."""
        return None

    if not TYPE_CHECKING:  # for type checkers, ``Observable.pipe``'s typed overloads stand

        def pipe(self, *operators):
            """Apply ``operators`` left to right, keeping the stream an ``LLMStream``.

            Each standard ReactiveX operator (``ops.filter``, ``ops.do_action``,
            ``ops.map``...) becomes a stage re-applied to a continuation (see
            :meth:`through`), so a ``retry_on_interrupt`` further on can still
            resume the reply. rxllm's operators that must see the whole stream
            (``retry_on_interrupt``) are applied as they are.
            """
            return _pipe(self, operators)

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

    @property
    def not_resumable_because(self) -> str | None:
        if isinstance(self._stage, _StandardStage) and self._stage.changes_type:
            return self._stage.name
        return self._inner.not_resumable_because


class _WholeStream(LLMStream):
    """An ``LLMStream`` with an operator applied to all of it (see :meth:`LLMStream.around`)."""

    def __init__(
        self,
        inner: LLMStream,
        operator: Callable[[Observable[StreamEvent]], Observable[StreamEvent]],
    ) -> None:
        Observable.__init__(self)
        self.provider = inner.provider
        self.request = inner.request
        self._inner = inner
        self._operator = operator
        self._applied = operator(inner)

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[StreamEvent],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        return self._applied.subscribe(observer, scheduler=scheduler)

    def continued(self, partial: str, *, tokens_used: int = 0, token_events: int = 0) -> LLMStream:
        inner = self._inner.continued(partial, tokens_used=tokens_used, token_events=token_events)
        return _WholeStream(inner, self._operator)

    @property
    def not_resumable_because(self) -> str | None:
        return self._inner.not_resumable_because


_EVENT_TYPES: tuple[type, ...] = get_args(StreamEvent)

_APPLIED_AS_IS = "_rxllm_applied_as_is"
"""Set on an operator that ``LLMStream.pipe`` must apply as it is, not as a stage."""


def applied_as_is(
    operator: Callable[[Observable[StreamEvent]], Observable[StreamEvent]],
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """Mark ``operator`` as one that ``LLMStream.pipe`` applies as it is.

    For operators that take care of an ``LLMStream`` themselves: those that
    must see the whole stream (``retry_on_interrupt`` asks it to continue) and
    those built with :func:`staged`.
    """
    setattr(operator, _APPLIED_AS_IS, True)
    return operator


def operator_name(operator: Callable[..., Any]) -> str:
    """A readable name for an operator: ``ops.map`` for ``ops.map(f)``, else its own name."""
    # reactivex's operators are closures made by ``curry_flip`` over the real function.
    for cell in getattr(operator, "__closure__", None) or ():
        try:
            content = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if inspect.isfunction(content) and "curry_flip" in operator.__qualname__:
            return "ops." + content.__name__.rstrip("_")
    return getattr(operator, "__qualname__", None) or repr(operator)


class _StandardStage:
    """A standard operator as a stage; notes whether it changed the event type."""

    def __init__(self, operator: Callable[[Observable[StreamEvent]], Observable[Any]]) -> None:
        self.operator = operator
        self.name = operator_name(operator)
        self.changes_type = False
        """Set, for good, once an item that is not a ``StreamEvent`` came out of it."""

    def __call__(self, source: Observable[StreamEvent], _before: int) -> Observable[StreamEvent]:
        applied = self.operator(source)

        def subscribe(
            observer: abc.ObserverBase[StreamEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            def on_next(item: Any) -> None:
                if not isinstance(item, _EVENT_TYPES):
                    self.changes_type = True
                observer.on_next(item)

            return applied.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)


def _pipe(stream: LLMStream, operators: tuple[Callable[[Any], Any], ...]) -> Any:
    result: Any = stream
    for operator in operators:
        if isinstance(result, LLMStream) and not getattr(operator, _APPLIED_AS_IS, False):
            result = result.through(_StandardStage(operator))
        else:
            result = operator(result)
    return result


def staged(
    stage: StreamStage,
) -> Callable[[Observable[StreamEvent]], Observable[StreamEvent]]:
    """An operator for ``.pipe``: kept as a stage on an ``LLMStream``, applied once elsewhere."""

    def operator(source: Observable[StreamEvent]) -> Observable[StreamEvent]:
        if isinstance(source, LLMStream):
            return source.through(stage)
        return stage(source, 0)

    return applied_as_is(operator)

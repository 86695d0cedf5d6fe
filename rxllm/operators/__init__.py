"""Operators: everything a user does around a stream, as composable transforms.

Each works with ``.pipe(...)`` on any provider's ``Observable[StreamEvent]``::

    stream.pipe(take_tokens(200), timeout(first_token=5, idle=10), retry_on_interrupt(3))

Standard ReactiveX operators compose with them. ``LLMStream.pipe`` keeps a
provider's stream an ``LLMStream`` through every operator: a standard one
(``ops.filter``, ``ops.do_action``, ``ops.map``...) becomes a stage that is
re-applied to a continuation, and ``retry_on_interrupt`` is applied to the
whole stream. The ordering rules that remain (each pinned by a marble test in
``tests/operators/test_standard_operators.py``):

1. **Anything may go before** ``retry_on_interrupt``: a cut reply is still
   resumed (the provider is asked to continue), and the operators before it
   are applied to the continuation too.
2. **An operator that changes the event type goes after**
   ``retry_on_interrupt`` (``ops.map(lambda e: e.text)``,
   ``ops.buffer_with_count(5)``). Before it, resuming is impossible: the retry
   sends the request again from the start, so delivered output comes again,
   and says so once with a :class:`~rxllm.stream.NotResumableWarning` naming
   the operator.
3. **Before** ``retry_on_interrupt`` **an operator sees each attempt on its
   own**: ``ops.take(3)``, ``ops.scan``, ``ops.to_list`` start afresh on the
   continuation. ``take_tokens(n)`` is the exception: it keeps one budget
   across attempts. To count over the whole reply, put the operator after.
4. **Last of all:** ``errors_as_events()``. Before ``retry_on_interrupt`` it
   it turns the error into an event, and the retry never sees one to retry.
5. **An operator that ends a stream early** (``take_tokens``, ``timeout``,
   ``cancel_when``) reports the provider, model and estimated prompt of the
   stream it ended, and the catalog's cost of that estimate, wherever it sits
   in one ``.pipe`` on a provider's stream (after standard operators or
   ``retry_on_interrupt`` too). Outside one (applied by hand to a plain
   Observable, after ``reactivex.merge``, or inside an operator composed with
   ``reactivex.compose``) it no longer knows them: provider and model are
   empty and the prompt is not counted.

Where reactivex already has the operator, rxllm's is built on it
(``errors_as_events`` is ``ops.catch`` plus one event). The others are not, for
reasons the LLM part makes more than a thin layer: ``take_tokens`` counts only
tokens, must close the connection *before* its ``done`` goes out (``ops.take``
completes first) and keeps one budget across resumed attempts; ``timeout`` has
three phases with their own clocks and sends a ``done`` before its error
(``ops.timeout`` has one clock and no ``done``); ``cancel_when`` must not send the
request when a trigger has already fired (``ops.take_until`` subscribes the
source first) and ends with a ``done``; ``race``/``hedge`` pick the first *token*,
not the first item or error as ``reactivex.amb`` does, and report the losers'
usage; ``batch_tokens`` flushes before any other event and never loses or repeats
the last batch when the timer and the end race (``buffer_with_time_or_count``).
"""

from __future__ import annotations

from ._batch_tokens import batch_tokens
from ._cancel_when import cancel_when
from ._drop_when_busy import drop_when_busy
from ._errors_as_events import errors_as_events
from ._fallback import fallback
from ._hedge import hedge
from ._latest import latest
from ._race import race
from ._rate_limit import RateLimiter, rate_limit
from ._retry_on_interrupt import Backoff, retry_on_interrupt
from ._take_tokens import take_tokens
from ._timeout import timeout

__all__: list[str] = []

__all__ += ["batch_tokens", "cancel_when", "errors_as_events", "take_tokens", "timeout"]
__all__ += ["drop_when_busy", "latest"]
__all__ += ["Backoff", "retry_on_interrupt"]
__all__ += ["fallback", "hedge", "race"]
__all__ += ["RateLimiter", "rate_limit"]

"""``fallback``: on a failure before the first token, switch to the next stream."""

from __future__ import annotations

import math

from reactivex import Observable

from ..events import StreamEvent
from ._race import contest

__all__ = ["fallback"]


def fallback(*streams: Observable[StreamEvent]) -> Observable[StreamEvent]:
    """The first stream; if it fails before its first token, the next one, and so on.

    Only one stream runs at a time. Any error before a stream's first token
    (rate limited, authentication, an unknown model, a dropped connection)
    moves on to the next stream; once a token has arrived the stream is
    committed and its errors propagate (wrap it in ``retry_on_interrupt``
    to retry those). If every stream fails, the last error is raised.

    Reasoning events are passed on as they come (only one stream runs, so
    nothing needs holding back): if a stream fails after reasoning but before
    its first token, the consumer sees that reasoning followed by the next
    stream's output.

    The final ``done`` is the answering stream's, so its ``provider`` and
    ``model`` say who answered; ``details["winner"]`` is that stream's index
    and ``details["discarded_usage"]`` the estimated usage of failed streams
    that had produced something.

    Example:
        >>> fallback(claude.stream(req), gpt.stream(req), gemini.stream(req))

    .. marble::
        :alt: fallback

        a: --#
        b:   --x-y-D|
        [ fallback(a, b) ]
           ----x-y-D|

    Args:
        streams: The streams to try, in order (at least one).

    Returns:
        An ``Observable[StreamEvent]`` of the answering stream's events.

    Raises:
        ValueError: When no stream is given.
    """
    if not streams:
        raise ValueError("fallback() needs at least one stream")
    first, *rest = streams
    return contest([(first, 0.0), *((stream, math.inf) for stream in rest)], hold_until_win=False)

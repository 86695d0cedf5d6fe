"""``hedge``: start a backup stream only if the primary is slow to produce its first token."""

from __future__ import annotations

import math

from reactivex import Observable

from ..events import StreamEvent
from ._race import contest

__all__ = ["hedge"]


def hedge(
    primary: Observable[StreamEvent], backup: Observable[StreamEvent], *, after: float
) -> Observable[StreamEvent]:
    """Subscribe to ``primary``; if it has produced no token after ``after`` seconds, race a backup.

    Until ``after`` seconds have passed only the primary runs. If by then it
    has not emitted a token, ``backup`` is subscribed as well and the two
    race (see :func:`race`): the first token wins and the other stream is
    disposed at once, closing its connection. If the primary fails before any
    token, the backup starts right away instead of waiting out ``after``.
    Reasoning events are held back until their stream's first token decides
    the race. If both fail, the last error is raised.

    The winner's ``done`` carries ``details["winner"]`` (0 primary, 1 backup)
    and, when the loser used anything, ``details["discarded_usage"]``.
    The timer runs on :func:`~rxllm.operators._scheduling.stream_scheduler`.

    Example:
        >>> hedge(claude.stream(req), gpt.stream(req), after=2.0)

    .. marble::
        :alt: hedge

        primary: ----------a-b-D|
        backup:      |-x-y-D|         (subscribed at `after`)
        [   hedge(primary, backup, after)   ]
                 ------x-y-D|         (primary disposed at x)

    Args:
        primary: The stream to prefer.
        backup: The stream to start when the primary is slow.
        after: Seconds to give the primary for its first token (>= 0).

    Returns:
        An ``Observable[StreamEvent]`` of the winner's events.

    Raises:
        ValueError: When ``after`` is negative or not a number.
    """
    if isinstance(after, bool) or not isinstance(after, int | float) or not 0 <= after < math.inf:
        raise ValueError(f"hedge: after must be a number of seconds >= 0, got {after!r}")
    return contest([(primary, 0.0), (backup, float(after))], hold_until_win=True)

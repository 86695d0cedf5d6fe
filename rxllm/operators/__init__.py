"""Operators: everything a user does around a stream, as composable transforms.

Each works with ``.pipe(...)`` on any provider's ``Observable[StreamEvent]``::

    stream.pipe(take_tokens(200), timeout(first_token=5, idle=10), retry_on_interrupt(3))
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

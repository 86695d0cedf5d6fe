"""rxllm's emulator: the four providers' real wire protocols on 127.0.0.1, with faults.

See :class:`Emulator`, and ``_behaviour`` for the per-request knobs.
"""

from ._behaviour import FAULTS, Behaviour, Fault, with_knobs
from ._server import Emulator
from ._state import RecordedRequest

__all__ = ["FAULTS", "Behaviour", "Emulator", "Fault", "RecordedRequest", "with_knobs"]

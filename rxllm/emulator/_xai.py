"""xAI gRPC dialect (to be written)."""

from __future__ import annotations

from ._state import EmulatorState


class XaiServer:
    port: int = 0

    async def stop(self) -> None:
        return None


async def start(state: EmulatorState, host: str, port: int) -> XaiServer:
    return XaiServer()

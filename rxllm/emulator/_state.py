"""What every dialect shares: the request record, fault counters and pacing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

from ._behaviour import Behaviour, split_model

__all__ = ["Dialect", "EmulatorState", "Pacer", "RecordedRequest"]

Dialect: TypeAlias = Literal["anthropic", "openai", "gemini", "xai"]


@dataclass(slots=True)
class RecordedRequest:
    """One request as the emulator saw it.

    ``disconnected`` is true when the client went away before the emulator
    finished sending (a cancelled stream); ``completed`` when the emulator sent
    everything it meant to (including deliberate faults).
    """

    dialect: Dialect
    endpoint: str
    model: str
    body: dict[str, Any]
    api_key: str | None
    stream: bool
    behaviour: Behaviour
    headers: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    completed: bool = False
    disconnected: bool = False
    events_sent: int = 0

    @property
    def fault(self) -> str | None:
        return self.behaviour.fault


class EmulatorState:
    """Shared by the HTTP and gRPC servers of one emulator. Thread-safe for readers."""

    def __init__(self, *, api_key: str | None, defaults: Behaviour) -> None:
        self.api_key = api_key
        self.defaults = defaults
        self.requests: list[RecordedRequest] = []
        self._fault_counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def begin(
        self,
        *,
        dialect: Dialect,
        endpoint: str,
        model: str,
        body: dict[str, Any],
        api_key: str | None,
        stream: bool,
        header_knobs: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RecordedRequest:
        """Record a request and decide its behaviour (knobs: defaults < model suffix < header).

        Raises ``ValueError`` for malformed knobs (dialects answer 400).
        """
        base_model, model_knobs = split_model(model)
        behaviour = self.defaults.merged(model_knobs).merged(header_knobs)
        if behaviour.fault is not None and behaviour.times is not None:
            # "Fail the first N requests, then succeed", counted per dialect and knob set.
            key = (dialect, f"{model_knobs}|{header_knobs}")
            with self._lock:
                seen = self._fault_counts.get(key, 0)
                self._fault_counts[key] = seen + 1
            if seen >= behaviour.times:
                behaviour = replace(behaviour, fault=None)
        record = RecordedRequest(
            dialect=dialect,
            endpoint=endpoint,
            model=base_model,
            body=body,
            api_key=api_key,
            stream=stream,
            behaviour=behaviour,
            headers=dict(headers or {}),
        )
        with self._changed:
            self.requests.append(record)
            self._changed.notify_all()
        return record

    def key_ok(self, presented: str | None) -> bool:
        """Whether the presented key is accepted (any key when the emulator has none)."""
        if self.api_key is None:
            return presented is not None and presented != ""
        return presented == self.api_key

    def finish(self, record: RecordedRequest, *, disconnected: bool) -> None:
        with self._changed:
            record.ended = time.monotonic()
            record.disconnected = disconnected
            record.completed = not disconnected
            self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (re-checked whenever a request starts or ends)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._fault_counts.clear()


class Pacer:
    """Sleeps between content events as the behaviour asks (ttft, then 1/tps per token)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._first = True

    async def before_content(self, tokens: int) -> None:
        if self._first:
            self._first = False
            if self._behaviour.ttft > 0:
                await asyncio.sleep(self._behaviour.ttft)
        elif self._behaviour.tps > 0:
            await asyncio.sleep(tokens / self._behaviour.tps)

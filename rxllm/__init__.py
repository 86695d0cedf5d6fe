"""rxllm: Claude, OpenAI, Gemini and Grok as cold ReactiveX ``Observable[StreamEvent]``.

Every request is a cold Observable: nothing happens until it is subscribed,
each subscription is one request, and disposing it closes the connection.
Consume it with Rx operators, ``await rxllm.collect(...)``,
``async for event in rxllm.aiter(...)``, or the blocking ``rxllm.iterate`` and
``rxllm.collect_sync`` in scripts.

Example:
    >>> import rxllm
    >>> async def words():
    ...     yield rxllm.TokenEvent("Hello")
    ...     yield rxllm.DoneEvent(rxllm.Usage(), rxllm.FinishReason.STOP, "demo", "demo")
    >>> rxllm.collect_sync(rxllm.from_async_iterable(words)).text
    'Hello'

What this module exports is the public API; ``tests/test_public_api.py`` pins it.
"""

from __future__ import annotations

from . import catalog, config, errors, flow, notebook, operators, phases, vendors
from .bridge import from_async_iterable
from .compare import Comparison, LaneEvent, LaneMetrics, LaneResult, compare
from .config import configure
from .connect import connect
from .consume import aiter, collect, collect_sync, iterate  # noqa: A004 - rxllm.aiter
from .content import DocumentPart, ImagePart, TextPart, document, image
from .conversation import Conversation
from .events import (
    DoneEvent,
    ErrorEvent,
    FinishReason,
    ObjectEvent,
    PartialObjectEvent,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
)
from .provider import Provider
from .registry import BoundModel, model, model_for_phase, provider, provider_names, register
from .request import Message, StreamRequest
from .result import StreamResult
from .stream import LLMStream
from .structured import ResponseFormat
from .sweeps import Sweep, SweepResult, SweepStore, sweep
from .tool_loop import run_tools
from .tools import Tool, ToolCall, tool
from .usage import UsageTracker
from .vendors import ProviderSpec

__all__ = [
    # The vocabulary
    "Message",
    "StreamRequest",
    "StreamEvent",
    "TokenEvent",
    "ReasoningEvent",
    "DoneEvent",
    "ErrorEvent",
    "ToolCallDeltaEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "PartialObjectEvent",
    "ObjectEvent",
    "Usage",
    "FinishReason",
    "StreamResult",
    "errors",
    # Tools, structured output and content parts
    "Tool",
    "ToolCall",
    "tool",
    "run_tools",
    "Conversation",
    "ResponseFormat",
    "TextPart",
    "ImagePart",
    "DocumentPart",
    "image",
    "document",
    # Streams and the bridge
    "LLMStream",
    "Provider",
    "from_async_iterable",
    # Consuming a stream
    "collect",
    "aiter",
    "iterate",
    "collect_sync",
    # Providers, registry, configuration and routing
    "provider",
    "model",
    "provider_names",
    "register",
    "ProviderSpec",
    "vendors",
    "BoundModel",
    "model_for_phase",
    "configure",
    "catalog",
    "config",
    # Operators, fan-out and the notebook display
    "operators",
    "compare",
    "Comparison",
    "LaneEvent",
    "LaneMetrics",
    "LaneResult",
    "sweep",
    "Sweep",
    "SweepResult",
    "SweepStore",
    "connect",
    "notebook",
    # Usage totals across requests
    "UsageTracker",
    # Steps, flows and the work phases
    "flow",
    "phases",
]

"""The public surface: what ``import rxllm`` offers is what users learn. Change it on purpose."""

from __future__ import annotations

from types import ModuleType

import rxllm

PUBLIC_API = [
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
    "LLMStream",
    "Provider",
    "from_async_iterable",
    "collect",
    "aiter",
    "iterate",
    "collect_sync",
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
    "UsageTracker",
    "flow",
    "phases",
]


def test_all_is_exactly_the_public_api() -> None:
    assert rxllm.__all__ == PUBLIC_API


def test_every_public_name_exists() -> None:
    for name in rxllm.__all__:
        assert getattr(rxllm, name, None) is not None, name


def test_star_import_gives_exactly_the_public_api() -> None:
    namespace: dict[str, object] = {}
    exec("from rxllm import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(PUBLIC_API)


def test_no_third_party_object_is_exported() -> None:
    # StreamEvent is a union alias of rxllm classes, so it has no module of its own.
    for name in set(rxllm.__all__) - {"StreamEvent"}:
        exported = getattr(rxllm, name)
        module = exported.__name__ if isinstance(exported, ModuleType) else exported.__module__
        assert module.startswith("rxllm"), f"{name} comes from {module}"

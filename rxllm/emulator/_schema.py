"""A deterministic JSON value that fits a JSON Schema: the emulated model's tool arguments
and structured replies.

Covers what tool and response schemas use: objects (every property, required or
not), arrays (two items), strings (``enum``, ``const``, ``format`` date/date-time,
else a word), integers, numbers, booleans, null, ``anyOf``/``oneOf``/``allOf``
(the first that is not null) and ``$ref`` into ``$defs``/``definitions``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

__all__ = ["instance_of"]

_WORDS = ("Oslo", "Zürich", "amber", "delta", "kestrel", "orbit", "maple", "quartz")


def instance_of(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A value fitting ``schema`` (the same for the same ``rng`` state)."""
    return _value(schema, schema, rng, depth=0)


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return node
    target: Any = root
    for key in ref[2:].split("/"):
        target = target.get(key, {}) if isinstance(target, Mapping) else {}
    return target if isinstance(target, Mapping) else {}


def _value(node: Mapping[str, Any], root: Mapping[str, Any], rng: random.Random, depth: int) -> Any:
    node = _resolve(node, root)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    if "default" in node and depth > 0:
        return node["default"]
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and options:
            chosen = next(
                (o for o in options if _resolve(o, root).get("type") != "null"), options[0]
            )
            return _value(chosen, root, rng, depth)
    if isinstance(node.get("allOf"), list) and node["allOf"]:
        return _value(node["allOf"][0], root, rng, depth)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in node else "string"
    if kind == "object":
        if depth > 6:
            return {}
        properties = node.get("properties") or {}
        return {name: _value(sub, root, rng, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        if depth > 6:
            return []
        items = node.get("items") or {"type": "string"}
        count = max(int(node.get("minItems", 2)), 1) if "minItems" in node else 2
        return [_value(items, root, rng, depth + 1) for _ in range(min(count, 5))]
    if kind == "integer":
        low = int(node.get("minimum", 1))
        high = int(node.get("maximum", max(low, 100)))
        return rng.randint(low, max(low, high))
    if kind == "number":
        bottom = float(node.get("minimum", 0.0))
        top = float(node.get("maximum", bottom + 100.0))
        return round(rng.uniform(bottom, top), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    fmt = node.get("format")
    if fmt == "date":
        return "2026-12-02"
    if fmt == "date-time":
        return "2026-12-02T12:00:00Z"
    return rng.choice(_WORDS)

"""The model catalog: which models each provider offers, their limits and list prices.

The figures live in ``rxllm/data/models.toml`` (package data, with the date they
were taken in ``as_of``), read once and cached. ``Provider.available_models()``
lists them, and every stream's ``done`` usage carries a cost computed here.

Model ids are matched forgivingly, the way the providers themselves accept them:
a dated snapshot (``claude-sonnet-4-5-20250929``, ``gpt-4.1-2025-04-14``,
``grok-4-0709``, ``gemini-2.0-flash-001``) or a ``-latest`` id resolves to its
base id, Gemini's ``models/`` prefix is dropped, and an emulator knob suffix
after ``~`` (``claude-sonnet-4-5~fault=drop``) is ignored.

Providers are named by their registry name (``"anthropic"``, not the alias
``"claude"``); vendors declared with models of their own
(:attr:`rxllm.vendors.ProviderSpec.models`) are added by the registry. Default
models belong to the vendors' specs, not to the catalog.

Example:
    >>> from rxllm import catalog
    >>> catalog.info("anthropic", "claude-sonnet-4-5-20250929").input_price
    3.0
    >>> catalog.cost("openai", "gpt-5-mini", Usage(prompt_tokens=1_000_000))
    0.25
"""

from __future__ import annotations

import datetime
import functools
import re
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .events import Usage

__all__ = [
    "ModelInfo",
    "as_of",
    "base_model_id",
    "add_models",
    "cost",
    "info",
    "models",
    "providers",
]

_KNOB_SEPARATOR = "~"
"""Separates a model id from emulator knobs (``rxllm.emulator``); never part of the id."""

_SNAPSHOT = re.compile(
    r"^(?P<base>.+?)-(?:latest|\d{8}|\d{4}-\d{2}-\d{2}|\d{4}|\d{3})$",
)
"""A dated snapshot or ``-latest`` suffix: ``-20250929``, ``-2025-04-14``, ``-0709``, ``-001``."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the catalog knows about one model. Prices are USD per million tokens.

    When ``long_context_threshold`` is set, a request whose prompt is longer
    than that many tokens is billed entirely at ``long_input_price`` and
    ``long_output_price`` (Gemini 2.5 Pro, Grok 4).
    """

    provider: str
    id: str
    context_window: int
    max_output_tokens: int
    input_price: float
    output_price: float
    reasoning: bool
    aliases: tuple[str, ...] = ()
    long_context_threshold: int | None = None
    long_input_price: float | None = None
    long_output_price: float | None = None

    def cost(self, usage: Usage) -> float:
        """US dollars for ``usage``: the prompt at the input price, all output (reasoning
        included) at the output price."""
        input_price, output_price = self.input_price, self.output_price
        if self.long_context_threshold is not None and (
            usage.prompt_tokens > self.long_context_threshold
        ):
            input_price = self.long_input_price or input_price
            output_price = self.long_output_price or output_price
        return (usage.prompt_tokens * input_price + usage.completion_tokens * output_price) / (
            1_000_000
        )


@dataclass(frozen=True, slots=True)
class _ProviderCatalog:
    models: Mapping[str, ModelInfo]
    """By id and by alias."""
    ids: tuple[str, ...]
    """Model ids in file order, without aliases."""


@dataclass(frozen=True, slots=True)
class _Catalog:
    as_of: datetime.date
    providers: Mapping[str, _ProviderCatalog]


# -- the public API ---------------------------------------------------------------------


def as_of() -> datetime.date:
    """The date the catalog's figures were taken."""
    return _catalog().as_of


def providers() -> list[str]:
    """The providers the catalog has figures for."""
    return list(_merged())


def models(provider: str) -> list[str]:
    """The model ids known for ``provider`` (its registry name), in catalog order.

    A provider the catalog has no figures for (a local server, a third-party
    plugin) has none: ``[]``, and accepts any model name.
    """
    entry = _provider_catalog(provider)
    return [] if entry is None else list(entry.ids)


def add_models(models: Iterable[ModelInfo]) -> None:
    """Add models that the packaged data file does not list (a vendor spec's own).

    A model already listed for its provider keeps the packaged figures.
    """
    with _added_lock:
        for model in models:
            _added.setdefault(model.provider, {}).setdefault(model.id, model)
        _merged.cache_clear()


def info(provider: str, model: str) -> ModelInfo | None:
    """What the catalog knows about ``model`` of ``provider``, or ``None``.

    Snapshot ids, ``-latest`` ids, Gemini's ``models/`` prefix and emulator knobs
    (``~...``) resolve to the base model. Never raises.
    """
    entry = _provider_catalog(provider)
    if entry is None:
        return None
    return _lookup(entry, model)


def cost(provider: str, model: str, usage: Usage) -> float | None:
    """US dollars for ``usage`` on ``model``, ``None`` when the price is not known.

    The prompt is billed at the input price and every output token, reasoning
    included, at the output price (long-prompt tiers applied). Never raises.
    """
    found = info(provider, model)
    return None if found is None else found.cost(usage)


# -- lookup -----------------------------------------------------------------------------


def base_model_id(model: str) -> str:
    """``model`` without an emulator knob suffix or Gemini's ``models/`` prefix."""
    model = model.partition(_KNOB_SEPARATOR)[0].strip()
    return model.removeprefix("models/")


def _lookup(entry: _ProviderCatalog, model: str) -> ModelInfo | None:
    model = base_model_id(model)
    found = entry.models.get(model)
    if found is None:
        snapshot = _SNAPSHOT.match(model)
        if snapshot is not None:
            found = entry.models.get(snapshot.group("base"))
    return found


def _provider_catalog(provider: str) -> _ProviderCatalog | None:
    return _merged().get(provider)


# -- loading ----------------------------------------------------------------------------


_added: dict[str, dict[str, ModelInfo]] = {}
_added_lock = threading.Lock()


@functools.cache
def _merged() -> Mapping[str, _ProviderCatalog]:
    """The packaged catalog with the added models after each provider's own."""
    merged = dict(_catalog().providers)
    with _added_lock:
        added = {name: list(models.values()) for name, models in _added.items()}
    for name, extra in added.items():
        known = merged.get(name)
        by_name = dict(known.models) if known is not None else {}
        ids = list(known.ids) if known is not None else []
        for model in extra:
            if model.id not in by_name:
                ids.append(model.id)
                for alias in (model.id, *model.aliases):
                    by_name.setdefault(alias, model)
        merged[name] = _ProviderCatalog(models=by_name, ids=tuple(ids))
    return merged


@functools.cache
def _catalog() -> _Catalog:
    data = tomllib.loads(
        resources.files("rxllm").joinpath("data", "models.toml").read_text(encoding="utf-8")
    )
    return _parse(data)


def _parse(data: Mapping[str, Any]) -> _Catalog:
    as_of = data.get("as_of")
    if not isinstance(as_of, datetime.date):
        raise ValueError("models.toml: as_of must be a date (YYYY-MM-DD)")
    parsed: dict[str, _ProviderCatalog] = {}
    for provider, table in data.items():
        if provider == "as_of":
            continue
        by_name: dict[str, ModelInfo] = {}
        ids: list[str] = []
        for model_id, fields in table["models"].items():
            model = ModelInfo(
                provider=provider,
                id=model_id,
                context_window=int(fields["context_window"]),
                max_output_tokens=int(fields["max_output_tokens"]),
                input_price=float(fields["input_price"]),
                output_price=float(fields["output_price"]),
                reasoning=bool(fields["reasoning"]),
                aliases=tuple(fields.get("aliases", ())),
                long_context_threshold=fields.get("long_context_threshold"),
                long_input_price=fields.get("long_input_price"),
                long_output_price=fields.get("long_output_price"),
            )
            ids.append(model_id)
            for name in (model_id, *model.aliases):
                if name in by_name:
                    raise ValueError(f"models.toml: {provider} lists {name!r} twice")
                by_name[name] = model
        parsed[provider] = _ProviderCatalog(models=by_name, ids=tuple(ids))
    return _Catalog(as_of=as_of, providers=parsed)

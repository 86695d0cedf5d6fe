"""The four work phases of the plan (PLAN, CREATIVE, IMPLEMENT, QA) as flow steps.

Each phase has capabilities (the plan's "Phase 5"), a system prompt for each, request
defaults and a default model, overridable in the configuration:

==========  =============================================  ==========================
phase       capabilities                                   request defaults
==========  =============================================  ==========================
plan        ``requirements``, ``architecture``,            reasoning on
            ``documentation``
creative    ``ui_ux``, ``problem_solving``,                temperature 0.9 where the
            ``design_patterns``                            vendor accepts it
implement   ``code_generation``, ``refactoring``,          temperature 0.2 where the
            ``optimization``                               vendor accepts it
qa          ``test_strategy``, ``code_review``,            reasoning on
            ``validation``
==========  =============================================  ==========================

"Where the vendor accepts it": Anthropic's current API takes no sampling parameters and
OpenAI's reasoning models (GPT-5, o-series) refuse ``temperature``, so it is not sent to
them; reasoning is not asked of a model the catalog says cannot reason.

**Which model.** A phase's model is, in order: the configuration's ``[phases]`` entry
for it, the ``[phases] default`` entry, then rxllm's default below (figures from
:mod:`rxllm.catalog`, USD per million input/output tokens):

- **plan** → ``gemini:gemini-2.5-pro``: reasons; a 1M-token context window reads whole
  requirement documents and code bases; $1.25 / $10, under Claude Sonnet's $3 / $15.
  A plan is written once per flow, so depth counts more than speed.
- **creative** → ``openai:gpt-5``: reasons; 400k context; $1.25 / $10. Design
  alternatives and trade-offs need a strong general model more than a coding one.
- **implement** → ``anthropic:claude-sonnet-4-6``: rxllm's default Claude, strong at
  code; 64k output tokens for whole files; $3 / $15, the dearest of the four, spent
  where the output is the product.
- **qa** → ``openai:gpt-5-mini``: a small, fast reasoning model at $0.25 / $2. Reviews
  and test plans run after every change, so price and speed count.

:func:`rxllm.model_for_phase` and :func:`model` here route the same way: the phase's
``[phases]`` entry, else ``[phases] default``, else the default above
(``rxllm.config.PHASE_DEFAULT_MODELS``).

**Your own phases and capabilities** come from the configuration: a phase is known once
``[phases]`` maps it to a model or ``[capabilities.<phase>]`` gives it capabilities;
``[capabilities.<phase>]`` maps capability names to system prompts, for your phases and
the four alike::

    [phases]
    review = "openai:gpt-5"
    [capabilities.review]
    security = "You review code for security flaws. List each with its fix."

**Usage per phase.** A :class:`PhaseStep` counts its usage under the phase's name as
tag, so ``result.usage.summary()`` of a flow has one row per phase (and model).

Example:
    >>> flow = Flow([PhaseStep("plan", capability="architecture", output_key="plan"),
    ...              PhaseStep("implement", prompt="Implement this plan:\\n{plan}",
    ...                        output_key="code"),
    ...              PhaseStep("qa", capability="code_review", prompt="Review:\\n{code}")])
    >>> result = await flow.run({"prompt": "A CLI that counts words"})
    >>> result.usage.summary()  # one row per phase
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from . import catalog, config, registry
from .config import Settings
from .errors import ConfigurationError
from .flow import LLMStreamStep

__all__ = [
    "BUILTIN_PHASES",
    "PhaseInfo",
    "PhaseStep",
    "model",
    "model_spec",
    "phase",
    "phase_names",
    "request_fields",
]


@dataclass(frozen=True, slots=True)
class PhaseInfo:
    """One phase: what it is for, its capabilities and defaults."""

    name: str
    system: str | None
    """The system prompt when no capability is named."""
    capabilities: Mapping[str, str] = field(default_factory=dict)
    """Capability name → its system prompt."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Request fields (``reasoning``, ``temperature``), sent where the vendor accepts them."""
    default_model: str | None = None
    """``"provider:model"`` when the configuration maps none (see the module docstring)."""

    def system_prompt(self, capability: str | None = None) -> str | None:
        """The system prompt for ``capability`` (or the phase's own for ``None``).

        Raises:
            ConfigurationError: the phase has no such capability (the message lists them).
        """
        if capability is None:
            return self.system
        if capability not in self.capabilities:
            known = ", ".join(self.capabilities) or "none"
            raise ConfigurationError(
                f"phase {self.name!r} has no capability {capability!r}; it has: {known} "
                f"(add one in rxllm.toml as [capabilities.{self.name}] {capability} = "
                '"<system prompt>")'
            )
        return self.capabilities[capability]


def _role(phase: str, work: str) -> str:
    return f"You are working in the {phase.upper()} phase of a software project. {work}"


BUILTIN_PHASES: Mapping[str, PhaseInfo] = MappingProxyType(
    {
        "plan": PhaseInfo(
            "plan",
            _role("plan", "Analyse what is asked and lay out how to build it, before any code."),
            {
                "requirements": _role(
                    "plan",
                    "Analyse the requirements: list what must be built, the constraints, "
                    "open questions and acceptance criteria. Separate what is stated from "
                    "what you assume.",
                ),
                "architecture": _role(
                    "plan",
                    "Design the architecture: components and their responsibilities, the data "
                    "and control flow between them, interfaces, and the trade-offs of the "
                    "choices you make.",
                ),
                "documentation": _role(
                    "plan",
                    "Write the documentation a developer needs to build and use this: purpose, "
                    "structure, setup and examples. Be concise and concrete.",
                ),
            },
            {"reasoning": True},
            config.PHASE_DEFAULT_MODELS["plan"],
        ),
        "creative": PhaseInfo(
            "creative",
            _role("creative", "Explore designs and alternatives before one is chosen."),
            {
                "ui_ux": _role(
                    "creative",
                    "Design the user interface and experience: the user's tasks, screens or "
                    "commands, interaction flow, and how errors and edge cases look to the user.",
                ),
                "problem_solving": _role(
                    "creative",
                    "Solve the problem creatively: propose several distinct approaches, compare "
                    "them, and recommend one with your reasons.",
                ),
                "design_patterns": _role(
                    "creative",
                    "Propose design patterns that fit: for each, where it applies, what it "
                    "solves here and what it costs.",
                ),
            },
            {"temperature": 0.9},
            config.PHASE_DEFAULT_MODELS["creative"],
        ),
        "implement": PhaseInfo(
            "implement",
            _role("implement", "Write correct, idiomatic, tested code for the plan you are given."),
            {
                "code_generation": _role(
                    "implement",
                    "Write the code: complete, idiomatic, with types and docstrings where the "
                    "language has them. Output code first, then brief notes.",
                ),
                "refactoring": _role(
                    "implement",
                    "Refactor the code you are given: keep its behaviour, make it simpler and "
                    "clearer, and explain each change in one line.",
                ),
                "optimization": _role(
                    "implement",
                    "Suggest optimizations: find where time or memory goes, propose changes "
                    "with their expected gain, and keep correctness first.",
                ),
            },
            {"temperature": 0.2},
            config.PHASE_DEFAULT_MODELS["implement"],
        ),
        "qa": PhaseInfo(
            "qa",
            _role("qa", "Check that the work is correct and complete."),
            {
                "test_strategy": _role(
                    "qa",
                    "Write a test strategy: what to test at which level, the important cases "
                    "and edge cases, and what would prove the work is done.",
                ),
                "code_review": _role(
                    "qa",
                    "Review the code: bugs, unclear parts, missing tests and risks, each with "
                    "where it is and how to fix it, most important first.",
                ),
                "validation": _role(
                    "qa",
                    "Validate the work against its requirements: for each requirement, say "
                    "whether it is met, and the evidence.",
                ),
            },
            {"reasoning": True},
            config.PHASE_DEFAULT_MODELS["qa"],
        ),
    }
)
"""The plan's four phases, with rxllm's defaults (before the configuration)."""


def phase_names(settings: Settings | None = None) -> list[str]:
    """The known phases: the four, then those the configuration adds."""
    current = settings or config.settings()
    added = [*current.phases, *current.capabilities]
    names = list(BUILTIN_PHASES)
    names += [name for name in dict.fromkeys(added) if name not in names and name != "default"]
    return names


def phase(name: str, *, settings: Settings | None = None) -> PhaseInfo:
    """The phase ``name``: rxllm's, with the configuration's capabilities added.

    Raises:
        ConfigurationError: an unknown phase (the message lists the known ones).
    """
    current = settings or config.settings()
    known = phase_names(current)
    if name not in known:
        raise ConfigurationError(
            f"unknown phase {name!r}; the phases are: {', '.join(known)} (add one in "
            f'rxllm.toml as [phases] {name} = "provider:model")'
        )
    found = BUILTIN_PHASES.get(name) or PhaseInfo(name, None)
    added = current.capabilities.get(name)
    if added:
        found = replace(found, capabilities={**found.capabilities, **added})
    return found


def model_spec(name: str, *, settings: Settings | None = None) -> str:
    """The ``"provider:model"`` for phase ``name``: configured, else ``[phases] default``,
    else the phase's default (see the module docstring).

    Raises:
        ConfigurationError: an unknown phase, or one of your own that maps to no model.
    """
    current = settings or config.settings()
    found = phase(name, settings=current)
    spec = current.phases.get(name) or current.phases.get("default") or found.default_model
    if spec is None:
        raise ConfigurationError(
            f"no model for phase {name!r}: set it in rxllm.toml as [phases] {name} = "
            f'"provider:model", or RXLLM_PHASES__{name.upper()}=provider:model'
        )
    return spec


def model(name: str, **options: Any) -> registry.BoundModel:
    """The model for phase ``name`` (:func:`model_spec`), bound; ``options`` go to
    :func:`rxllm.model` (``api_key=``, ``base_url=``, ``settings=``...)."""
    return _bind(name, options)


def _bind(name: str, options: dict[str, Any]) -> registry.BoundModel:
    current = options.get("settings") or config.settings()
    options["settings"] = current
    return registry.model(model_spec(name, settings=current), **options)


def request_fields(info: PhaseInfo, bound: registry.BoundModel) -> dict[str, Any]:
    """The phase's request defaults that ``bound``'s vendor and model accept."""
    known = catalog.info(bound.provider.name, bound.name)
    fields = dict(info.defaults)
    if "temperature" in fields and not _takes_temperature(bound.provider.name, known):
        del fields["temperature"]
    if fields.get("reasoning") and known is not None and not known.reasoning:
        del fields["reasoning"]
    return fields


def _takes_temperature(provider: str, known: catalog.ModelInfo | None) -> bool:
    if provider == "anthropic":  # API version 2026-10-21 removed the sampling parameters
        return False
    if provider == "openai":  # its reasoning models refuse temperature
        return known is None or not known.reasoning
    return True


class PhaseStep(LLMStreamStep):
    """An :class:`~rxllm.flow.LLMStreamStep` set up for a phase and a capability.

    The system prompt is the capability's (the phase's own without one), the request
    defaults are the phase's (where the vendor accepts them), the model is the
    phase's (:func:`model`) unless ``model=`` is given, and usage is tagged with the
    phase's name. Everything else is :class:`~rxllm.flow.LLMStreamStep`'s: keyword
    arguments go there and win over the phase's defaults.

    Raises:
        ConfigurationError: an unknown phase or capability (the message lists the known
            ones), or no model for the phase; before any request.

    Example:
        >>> PhaseStep("plan", capability="architecture", output_key="plan")
        >>> PhaseStep("qa", capability="code_review", model=gpt, prompt="Review:\\n{code}")
    """

    def __init__(
        self,
        phase_name: str,
        capability: str | None = None,
        *,
        model: registry.BoundModel | str | None = None,
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        current = settings or config.settings()
        info = phase(phase_name, settings=current)
        system = info.system_prompt(capability)
        if model is None:
            bound = _bind(phase_name, {"settings": current})
        elif isinstance(model, str):
            bound = registry.model(model, settings=current)
        else:
            bound = model
        self.phase = info
        self.capability = capability
        options.setdefault("system", system)
        options.setdefault("tag", phase_name)
        options.setdefault("name", f"{phase_name}:{capability}" if capability else phase_name)
        for key, value in request_fields(info, bound).items():
            options.setdefault(key, value)
        super().__init__(bound, **options)

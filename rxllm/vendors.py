"""What a vendor *is*, declared once: one frozen :class:`ProviderSpec` per vendor.

A spec names the vendor (and its aliases), the mapper class that speaks its API,
the environment variables for its key and base URL and what the base URL means,
the default model, whether a key is needed, and which emulator dialect serves it.
The registry, the configuration, ``rxllm.connect``, the emulator's URL table,
the command line and the contract tests all read these; nothing restates them.

An OpenAI-compatible service or a local server is a spec on the OpenAI mapper and
nothing more::

    ProviderSpec(
        name="deepseek",
        mapper="rxllm.providers.openai:OpenAIProvider",
        key_env=("DEEPSEEK_API_KEY",),
        base_url_env="DEEPSEEK_BASE_URL",
        base_url="https://api.deepseek.com/v1",
        default_model="deepseek-chat",
        emulator="openai",
    )

Register your own with ``rxllm.register(spec)`` or the ``rxllm.providers``
entry-point group (an entry point may name a spec or a Provider subclass).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import ModelInfo

__all__ = [
    "BUILTIN_SPECS",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "OPENAI_MAPPER",
    "ProviderSpec",
    "vendor",
]

OPENAI_MAPPER = "rxllm.providers.openai:OpenAIProvider"
"""The OpenAI Chat Completions mapper, which every OpenAI-compatible spec reuses."""

# Why 300 s: the longest silence a healthy stream has is a reasoning model thinking before
# its first visible token. OpenAI's Chat Completions, Grok 4 and Gemini (thoughts not
# included) send nothing meanwhile, and at high effort that is often one or two minutes,
# sometimes more; a local server loading a model is silent too. Anthropic sends a ping every
# few seconds, so on Claude any limit above ~30 s only ever fires on a dead connection.
# 300 s cuts no healthy reply we know of and still bounds a server that accepted the
# connection and never answers at half the SDKs' 600 s (xai-sdk: 27 min for the whole
# call). Interactive code wants far less: ``timeout(first_token=, idle=)`` on the stream.
DEFAULT_TIMEOUT = 300.0
"""Seconds: a provider's limit per read when none is configured (``timeout=``).

The longest wait for the connection, the response headers or the next event; a
stream is never cut for its total length (that is the ``timeout(total=)`` operator)."""

# Why 100: it is the keep-alive pool the anthropic and openai SDKs size for themselves, and
# a high but reachable load for one process (at a few thousand requests a minute and
# replies of tens of seconds). Past it, more sockets mostly load the event loop: 1,000
# connects at once on one loop missed their 5 s connect limit, where a queue lets every
# stream through. Raise it for more; streams beyond it wait for a free slot.
DEFAULT_MAX_CONNECTIONS = 100
"""Concurrent streams per provider and event loop when none is configured
(``max_connections=``): the HTTP connection pool's size (Anthropic, OpenAI, Gemini), or
concurrent calls on Grok's one multiplexed gRPC connection. Waiting for a slot is not
bounded by ``timeout=``."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One vendor, declared once.

    Attributes:
        name: the registry name (``"anthropic"``), used in ``"provider:model"`` strings,
            configuration tables and ``done.provider``.
        mapper: the :class:`~rxllm.provider.Provider` subclass that speaks the API, or
            where to import it from (``"module:Class"``, imported on first use so that
            ``import rxllm`` imports no SDK).
        aliases: other names accepted everywhere (``"claude"``).
        key_env: environment variables read for the API key, in order of preference.
        key_required: ``False`` for servers that need no key (local servers).
        base_url_env: environment variable read for the base URL.
        base_url: the default base URL; ``None`` leaves it to the SDK (the real service).
        base_url_required: the vendor has no default address (``openai-compatible``).
        base_url_means: what a base URL is for this vendor's SDK, for documentation.
        default_model: the model used when a request names none.
        default_max_tokens: ``max_tokens`` when a request sets none (``None``: the
            API's own default). Configurable per provider (``max_tokens`` in settings).
        emulator: the emulator dialect that serves it (``"anthropic"``, ``"openai"``,
            ``"gemini"``, ``"xai"``), or ``None`` if the emulator cannot.
        models: catalog entries for models the packaged catalog does not list
            (with prices, so cost is known); a vendor whose catalog is empty accepts
            any model name.
        description: one line for ``rxllm models`` and error messages.
    """

    name: str
    mapper: str | type[Any]
    aliases: tuple[str, ...] = ()
    key_env: tuple[str, ...] = ()
    key_required: bool = True
    base_url_env: str | None = None
    base_url: str | None = None
    base_url_required: bool = False
    base_url_means: str = "what the SDK means by base_url"
    default_model: str | None = None
    default_max_tokens: int | None = None
    emulator: str | None = None
    models: tuple[ModelInfo, ...] = ()
    description: str = ""
    compared_by_default: bool = False
    """Whether ``rxllm compare`` without ``-m`` includes its default model."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Options for the mapper class (e.g. fixed headers), below what the caller passes."""

    @property
    def names(self) -> tuple[str, ...]:
        """The name and every alias."""
        return (self.name, *self.aliases)

    def key_hint(self) -> str:
        """How to give this vendor a key: ``"set ANTHROPIC_API_KEY or pass api_key="``."""
        if not self.key_env:
            return "pass api_key="
        return f"set {' or '.join(self.key_env)} or pass api_key="


def _compatible(
    name: str,
    *,
    base_url: str | None,
    key_env: tuple[str, ...],
    base_url_env: str,
    description: str,
    key_required: bool = True,
    default_model: str | None = None,
    aliases: tuple[str, ...] = (),
    models: tuple[ModelInfo, ...] = (),
) -> ProviderSpec:
    """An OpenAI-compatible vendor: the OpenAI mapper at another base URL."""
    return ProviderSpec(
        name=name,
        mapper=OPENAI_MAPPER,
        aliases=aliases,
        key_env=key_env,
        key_required=key_required,
        base_url_env=base_url_env,
        base_url=base_url,
        base_url_means="the OpenAI-compatible API root, including /v1",
        default_model=default_model,
        emulator="openai",
        models=models,
        description=description,
    )


def _priced(
    provider: str, model: str, *, context: int, output: int, prices: tuple[float, float]
) -> ModelInfo:
    return ModelInfo(
        provider=provider,
        id=model,
        context_window=context,
        max_output_tokens=output,
        input_price=prices[0],
        output_price=prices[1],
        reasoning=False,
    )


BUILTIN_SPECS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        name="anthropic",
        mapper="rxllm.providers.anthropic:AnthropicProvider",
        aliases=("claude",),
        key_env=("ANTHROPIC_API_KEY",),
        base_url_env="ANTHROPIC_BASE_URL",
        base_url_means="the API root; the SDK adds /v1/messages",
        default_model="claude-sonnet-4-6",
        # The Messages API requires max_tokens; the model's maximum (64,000 for Sonnet)
        # lets a rambling reply cost dollars, so a moderate default, as most SDK wrappers.
        default_max_tokens=4096,
        emulator="anthropic",
        compared_by_default=True,
        description="Anthropic Claude, Messages API",
    ),
    ProviderSpec(
        name="openai",
        mapper=OPENAI_MAPPER,
        key_env=("OPENAI_API_KEY",),
        base_url_env="OPENAI_BASE_URL",
        base_url_means="the API root including /v1",
        default_model="gpt-5-mini",
        emulator="openai",
        compared_by_default=True,
        description="OpenAI Chat Completions",
    ),
    ProviderSpec(
        name="gemini",
        mapper="rxllm.providers.gemini:GeminiProvider",
        aliases=("google",),
        key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        base_url_env="GEMINI_BASE_URL",
        base_url_means="the host root; the SDK adds the API version",
        default_model="gemini-2.5-flash",
        emulator="gemini",
        compared_by_default=True,
        description="Google Gemini API",
    ),
    ProviderSpec(
        name="grok",
        mapper="rxllm.providers.grok:GrokProvider",
        aliases=("xai",),
        key_env=("XAI_API_KEY",),
        base_url_env="XAI_BASE_URL",
        base_url_means="the gRPC host:port (plaintext on loopback)",
        default_model="grok-4",
        emulator="xai",
        compared_by_default=True,
        description="xAI Grok over gRPC",
    ),
    # -- OpenAI-compatible services and local servers -----------------------------------
    ProviderSpec(
        name="openai-compatible",
        mapper=OPENAI_MAPPER,
        aliases=("compatible",),
        key_env=("OPENAI_COMPATIBLE_API_KEY",),
        key_required=False,
        base_url_env="OPENAI_COMPATIBLE_BASE_URL",
        base_url_required=True,
        base_url_means="the server's OpenAI-compatible API root, including /v1 (required)",
        emulator="openai",
        description="any OpenAI-compatible server: pass base_url=",
    ),
    _compatible(
        "openrouter",
        base_url="https://openrouter.ai/api/v1",
        key_env=("OPENROUTER_API_KEY",),
        base_url_env="OPENROUTER_BASE_URL",
        description="OpenRouter (OpenAI-compatible)",
    ),
    _compatible(
        "deepseek",
        base_url="https://api.deepseek.com/v1",
        key_env=("DEEPSEEK_API_KEY",),
        base_url_env="DEEPSEEK_BASE_URL",
        default_model="deepseek-chat",
        description="DeepSeek (OpenAI-compatible)",
        # List prices per million tokens (cache miss), DeepSeek's pricing page, 2026-11.
        models=(
            _priced(
                "deepseek", "deepseek-chat", context=128_000, output=8_000, prices=(0.28, 0.42)
            ),
            _priced(
                "deepseek", "deepseek-reasoner", context=128_000, output=64_000, prices=(0.28, 0.42)
            ),
        ),
    ),
    _compatible(
        "mistral",
        base_url="https://api.mistral.ai/v1",
        key_env=("MISTRAL_API_KEY",),
        base_url_env="MISTRAL_BASE_URL",
        default_model="mistral-small-latest",
        description="Mistral La Plateforme (OpenAI-compatible)",
    ),
    _compatible(
        "groq",
        base_url="https://api.groq.com/openai/v1",
        key_env=("GROQ_API_KEY",),
        base_url_env="GROQ_BASE_URL",
        description="Groq (OpenAI-compatible)",
    ),
    _compatible(
        "together",
        base_url="https://api.together.xyz/v1",
        key_env=("TOGETHER_API_KEY",),
        base_url_env="TOGETHER_BASE_URL",
        description="Together AI (OpenAI-compatible)",
    ),
    _compatible(
        "ollama",
        base_url="http://localhost:11434/v1",
        key_env=("OLLAMA_API_KEY",),
        key_required=False,
        base_url_env="OLLAMA_BASE_URL",
        description="a local Ollama server (OpenAI-compatible, no key)",
    ),
    _compatible(
        "vllm",
        base_url="http://localhost:8000/v1",
        key_env=("VLLM_API_KEY",),
        key_required=False,
        base_url_env="VLLM_BASE_URL",
        description="a local vLLM server (OpenAI-compatible, no key unless --api-key)",
    ),
    _compatible(
        "llama-cpp",
        aliases=("llamacpp",),
        base_url="http://localhost:8080/v1",
        key_env=("LLAMA_CPP_API_KEY",),
        key_required=False,
        base_url_env="LLAMA_CPP_BASE_URL",
        description="a local llama.cpp server (OpenAI-compatible, no key unless --api-key)",
    ),
    _compatible(
        "lmstudio",
        base_url="http://localhost:1234/v1",
        key_env=("LMSTUDIO_API_KEY",),
        key_required=False,
        base_url_env="LMSTUDIO_BASE_URL",
        description="a local LM Studio server (OpenAI-compatible, no key)",
    ),
)
"""rxllm's own vendors: the four first, then the OpenAI-compatible presets."""


def vendor(name: str) -> ProviderSpec:
    """The built-in spec named ``name`` (not an alias): for the mapper modules' ``spec``.

    Use :func:`rxllm.registry.spec` for any registered vendor, by name or alias.
    """
    for spec in BUILTIN_SPECS:
        if spec.name == name:
            return spec
    raise KeyError(name)

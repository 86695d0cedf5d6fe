"""A third-party vendor as a plugin package would ship it: a spec and its own mapper class.

``plugin_site/`` holds the package's dist-info, whose entry point names :data:`ACME`;
the contract suite puts that directory on ``sys.path`` for its own tests only.
"""

from __future__ import annotations

from rxllm.providers.openai import OpenAIProvider
from rxllm.vendors import ProviderSpec


class AcmeProvider(OpenAIProvider):
    """Acme's API is OpenAI Chat Completions, reached through a mapper class of its own."""


ACME = ProviderSpec(
    name="acme-plugin",
    mapper=AcmeProvider,
    key_env=("ACME_PLUGIN_API_KEY",),
    base_url_env="ACME_PLUGIN_BASE_URL",
    base_url="https://api.acme.invalid/v1",
    default_model="acme-1",
    emulator="openai",
    description="a plugin vendor, for the contract suite",
)

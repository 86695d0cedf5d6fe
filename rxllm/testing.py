"""Pytest fixtures for testing code that uses rxllm, against rxllm's emulator.

Enable them in a ``conftest.py``::

    pytest_plugins = ["rxllm.testing"]

then ask for ``emulator`` (async tests; started on the test's event loop) or
``emulator_thread`` (sync tests; runs on a background thread).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from .emulator import Emulator

__all__ = ["EMULATOR_KEY", "emulator", "emulator_thread"]

EMULATOR_KEY = "sk-emulator-test-key-0123456789"
"""The key the fixtures' emulators accept; any other key is rejected as invalid."""


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An emulator on the test's event loop, accepting only :data:`EMULATOR_KEY`."""
    async with Emulator(api_key=EMULATOR_KEY) as emu:
        yield emu


@pytest.fixture
def emulator_thread() -> Iterator[Emulator]:
    """An emulator on a background thread (for synchronous tests)."""
    with Emulator(api_key=EMULATOR_KEY) as emu:
        yield emu

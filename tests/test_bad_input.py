"""Bad input fails before the network with an error that names the field; a key that could
not travel as given is refused; no key ever reaches a log record."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import rxllm
from rxllm.emulator import Emulator
from rxllm.errors import ConfigurationError
from rxllm.request import StreamRequest
from rxllm.testing import EMULATOR_KEY
from tests.operators.emulated import NAMES, model, run, text_of

RECOGNIZABLE = "sk-live-RECOGNIZABLE-0123456789abcdef"


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (f"{RECOGNIZABLE}\n", "ends with whitespace"),
        (f" {RECOGNIZABLE}", "starts with whitespace"),
        (f"{RECOGNIZABLE}\nX-Injected: 1", f"control character at position {len(RECOGNIZABLE)}"),
        ("sk-ключ-12345678", "non-ASCII character at position 3"),
        ("   ", "blank"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_a_key_that_cannot_travel_as_given_is_refused_without_showing_it(
    name: str, key: str, said: str
) -> None:
    with pytest.raises(ConfigurationError, match=said) as raised:
        rxllm.provider(name, api_key=key, base_url="http://127.0.0.1:9")
    assert RECOGNIZABLE not in str(raised.value) + repr(raised.value)
    assert raised.value.__cause__ is None


def test_a_bad_key_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", f"{RECOGNIZABLE}\r\n")
    with pytest.raises(ConfigurationError, match=r"gemini \(from GEMINI_API_KEY\) ends with"):
        rxllm.model("gemini:gemini-2.5-flash")


async def test_no_request_is_sent_with_a_bad_key(emulator: Emulator) -> None:
    for name in NAMES:
        with pytest.raises(ConfigurationError):
            rxllm.provider(name, api_key="bad key", base_url=emulator.base_url(name))
    assert emulator.requests == []


@pytest.mark.parametrize("name", NAMES)
async def test_no_key_reaches_a_log_record(
    name: str, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logging on, a request and a failed request on each provider: the key given
    never appears in what any logger (rxllm's, an SDK's, a transport's) recorded."""
    with caplog.at_level(logging.DEBUG):
        provider = rxllm.provider(name, api_key=RECOGNIZABLE, base_url=emulator.base_url(name))
        try:
            events, error = await run(provider.stream("Hi", model=model(name), max_tokens=3))
            logging.getLogger("openai._base_client").debug("headers: %s", {"key": RECOGNIZABLE})
            logging.getLogger("rxllm").exception("failed", exc_info=RuntimeError(RECOGNIZABLE))
        finally:
            await provider.aclose()
    assert type(error).__name__ == "AuthenticationError"  # the emulator wants its own key
    assert events == []
    assert caplog.records
    assert RECOGNIZABLE not in caplog.text
    for record in caplog.records:
        assert RECOGNIZABLE not in record.getMessage()
        assert RECOGNIZABLE not in (record.exc_text or "")
    assert any("**********" in r.getMessage() for r in caplog.records)


# -- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"prompt": "Hi", "system": 123}, "StreamRequest.system must be a str"),
        ({"prompt": "a\x00b"}, r"StreamRequest.prompt contains a NUL"),
        ({"prompt": "bad \ud800 text"}, "StreamRequest.prompt contains a lone surrogate"),
        ({"prompt": "Hi", "system": "x\udcff"}, "StreamRequest.system contains a lone surrogate"),
        ({"messages": [None]}, r"StreamRequest.messages\[0\] must be a Message"),
        ({"messages": ["hi"]}, r"StreamRequest.messages\[0\] must be a Message"),
        ({"messages": "hi"}, "StreamRequest.messages must be a list"),
        ({"messages": [{"role": "user", "content": ""}]}, "Message.content must not be empty"),
        ({"messages": [("user", "  ")]}, "Message.content must not be empty"),
        ({"messages": [("user", "a\x00")]}, "Message.content contains a NUL"),
        ({"prompt": "Hi", "stop": ["\x00"]}, "StreamRequest.stop contains a NUL"),
        ({"prompt": "Hi", "max_tokens": -1}, "max_tokens must be >= 1"),
    ],
)
def test_bad_request_fields_are_value_errors_naming_the_field(
    fields: dict[str, Any], said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        StreamRequest(model="m", **fields)


@pytest.mark.parametrize("name", NAMES)
async def test_max_tokens_above_the_models_limit_is_refused_before_sending(
    name: str, emulator: Emulator
) -> None:
    provider = rxllm.provider(name, api_key=EMULATOR_KEY, base_url=emulator.base_url(name))
    limit = rxllm.catalog.info(name, model(name))
    assert limit is not None
    with pytest.raises(ValueError, match=f"above the {limit.max_output_tokens:,} tokens"):
        provider.stream("Hi", model=model(name), max_tokens=limit.max_output_tokens + 1)
    events, error = await run(
        provider.stream("Hi", model=model(name), max_tokens=limit.max_output_tokens)
    )
    await provider.aclose()
    assert error is None
    assert text_of(events)
    assert len(emulator.requests) == 1


def test_an_unknown_or_missing_provider_name_is_a_configuration_error() -> None:
    for name in (None, "", "nosuch"):
        with pytest.raises(ConfigurationError, match="unknown provider"):
            rxllm.provider(name)  # type: ignore[arg-type]

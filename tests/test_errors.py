"""The error tree: one base, normalized fields, the original exception kept as the cause."""

from __future__ import annotations

import pickle

import pytest

from rxllm import errors

RETRYABLE = [
    errors.RateLimitedError,
    errors.OverloadedError,
    errors.ServerError,
    errors.InterruptedError,
]
NOT_RETRYABLE = [
    errors.AuthenticationError,
    errors.PermissionDeniedError,
    errors.InvalidRequestError,
    errors.ContextTooLongError,
    errors.ModelNotFoundError,
    errors.ConfigurationError,
    errors.CancelledError,
]


@pytest.mark.parametrize("cls", RETRYABLE + NOT_RETRYABLE)
def test_every_error_is_an_rxllm_error(cls: type[errors.RxllmError]) -> None:
    assert issubclass(cls, errors.RxllmError)


def test_provider_errors_share_a_base_and_context_too_long_is_an_invalid_request() -> None:
    for cls in [*RETRYABLE, *NOT_RETRYABLE[:5]]:
        assert issubclass(cls, errors.ProviderError)
    assert issubclass(errors.ContextTooLongError, errors.InvalidRequestError)
    assert issubclass(errors.ConfigurationError, ValueError)


@pytest.mark.parametrize("cls", RETRYABLE)
def test_transient_errors_are_retryable(cls: type[errors.RxllmError]) -> None:
    assert cls("x").retryable


@pytest.mark.parametrize("cls", NOT_RETRYABLE)
def test_permanent_errors_are_not_retryable(cls: type[errors.RxllmError]) -> None:
    assert not cls("x").retryable


def test_retryable_can_be_overridden_per_error() -> None:
    assert not errors.ServerError("x", retryable=False).retryable
    assert errors.ServerError("y").retryable


def test_an_error_carries_provider_model_status_and_retry_after() -> None:
    error = errors.RateLimitedError(
        "too many requests", provider="anthropic", model="claude-x", status=429, retry_after=2.5
    )
    assert (error.provider, error.model, error.status, error.retry_after) == (
        "anthropic",
        "claude-x",
        429,
        2.5,
    )
    assert error.message == "too many requests"


def translate(original: Exception) -> None:
    """What a provider module does with an SDK error."""
    try:
        raise original
    except ConnectionResetError as sdk_error:
        raise errors.InterruptedError("the stream dropped", provider="openai") from sdk_error


def test_the_original_exception_is_the_cause() -> None:
    original = ConnectionResetError("peer reset")
    with pytest.raises(errors.InterruptedError) as caught:
        translate(original)
    assert caught.value.__cause__ is original


def test_timeout_carries_its_phase_and_only_idle_is_retryable() -> None:
    assert errors.TimeoutError("t", phase="idle").retryable
    first = errors.TimeoutError("t", phase="first_token", provider="gemini")
    assert first.phase == "first_token"
    assert not first.retryable
    assert not errors.TimeoutError("t", phase="total").retryable


def test_str_says_where_and_what() -> None:
    error = errors.OverloadedError("busy", provider="anthropic", model="claude-x", status=529)
    assert str(error) == "anthropic:claude-x [529]: busy"
    assert str(errors.CancelledError("stopped")) == "stopped"
    assert str(errors.ServerError("down", status="INTERNAL")) == "[INTERNAL]: down"


def test_repr_shows_the_fields_that_are_set() -> None:
    error = errors.RateLimitedError("slow", provider="grok", retry_after=1.0)
    assert repr(error) == "RateLimitedError('slow', provider='grok', retry_after=1.0)"


@pytest.mark.parametrize(
    "error",
    [
        errors.RateLimitedError("slow", provider="grok", model="g", status=429, retry_after=3.0),
        errors.ServerError("down", retryable=False),
        errors.ConfigurationError("set OPENAI_API_KEY or pass api_key=", provider="openai"),
        errors.TimeoutError("no first token", phase="first_token", provider="p", model="m"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_a_pickle_round_trip(error: errors.RxllmError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert repr(copy) == repr(error)
    assert copy.retryable == error.retryable
    assert copy.retry_after == error.retry_after
    assert getattr(copy, "phase", None) == getattr(error, "phase", None)


def test_the_tree_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        if name != "TimeoutPhase":
            assert name in doc, name

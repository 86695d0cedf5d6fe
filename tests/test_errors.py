"""The error tree: one base, normalized fields, the original exception kept as the cause."""

from __future__ import annotations

import builtins
import inspect
import pickle
import re

import pytest

from rxllm import errors

RETRYABLE = [
    errors.RateLimitedError,
    errors.OverloadedError,
    errors.ServerError,
    errors.StreamInterruptedError,
    errors.ConnectionFailedError,
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


def test_a_failed_connection_is_a_stream_interrupted_before_anything_streamed() -> None:
    # ``except StreamInterruptedError`` (and retry_on_interrupt) covers both.
    assert issubclass(errors.ConnectionFailedError, errors.StreamInterruptedError)


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
        raise errors.StreamInterruptedError("the stream dropped", provider="openai") from sdk_error


def test_the_original_exception_is_the_cause() -> None:
    original = ConnectionResetError("peer reset")
    with pytest.raises(errors.StreamInterruptedError) as caught:
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


# -- builtins ------------------------------------------------------------------------------


def test_except_builtin_timeout_error_catches_rxllms_timeout() -> None:
    try:
        raise errors.TimeoutError("no first token", phase="first_token", provider="p")
    except TimeoutError as caught:  # the builtin: rxllm.errors is not imported by name here
        error = caught
    assert isinstance(error, errors.TimeoutError)
    assert error.phase == "first_token"
    assert str(error) == "p: no first token"


def test_rxllms_timeout_keeps_its_fields_as_a_builtin_timeout_error() -> None:
    error = errors.TimeoutError("quiet", phase="idle", provider="grok", model="g")
    assert type(error).__mro__.index(errors.RxllmError) < type(error).__mro__.index(
        builtins.TimeoutError
    )
    assert (error.provider, error.model, error.phase, error.retryable) == (
        "grok",
        "g",
        "idle",
        True,
    )
    assert error.args == ("quiet",)
    assert repr(error) == "TimeoutError('quiet', provider='grok', model='g')"


def test_no_error_shadows_a_builtin_without_being_one() -> None:
    for name in errors.__all__:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type):
            assert issubclass(getattr(errors, name), builtin), name


def test_the_old_interrupted_name_warns_and_is_the_same_class() -> None:
    with pytest.warns(DeprecationWarning, match="StreamInterruptedError"):
        old = errors.InterruptedError
    assert old is errors.StreamInterruptedError
    assert "InterruptedError" not in errors.__all__
    deprecated = pytest.warns(DeprecationWarning, match="InterruptedError is deprecated")
    with deprecated, pytest.raises(errors.InterruptedError):
        raise errors.ConnectionFailedError("refused")
    with pytest.warns(DeprecationWarning, match="InterruptedError is deprecated"):
        from rxllm.errors import InterruptedError as imported
    assert imported is errors.StreamInterruptedError


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchError"):
        _ = errors.NoSuchError  # type: ignore[attr-defined]


# -- the docstring: the tree and the rule book ---------------------------------------------------

ERROR_CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.RxllmError) and cls.__module__ == errors.__name__
    ),
    key=lambda cls: cls.__name__,
)
_ROW = re.compile(
    r"^\s*\| (?P<failure>[^|]*?) *\| [^|]*\| (?P<error>[^|]*?) *\| (?P<retry>[^|]*?) *\|$"
)


def rule_book() -> list[tuple[str, str, str]]:
    """``(failure, error, retry)`` for each row of the table in the errors docstring."""
    rows = []
    for line in (errors.__doc__ or "").splitlines():
        match = _ROW.match(line)
        if match and match["error"] and not match["error"].startswith(("error", "-", " ")):
            rows.append((match["failure"], match["error"], match["retry"]))
    return rows


def test_every_error_class_is_in_the_tree_and_the_public_names() -> None:
    doc = errors.__doc__ or ""
    for cls in ERROR_CLASSES:
        assert re.search(rf"(^ +|[├└]── ){cls.__name__}\b", doc, re.MULTILINE), cls.__name__
        assert cls.__name__ in errors.__all__, cls.__name__


def test_the_rule_book_names_every_class_a_failure_can_be() -> None:
    named = {error for _, error, _ in rule_book()}
    expected = {
        cls.__name__
        for cls in ERROR_CLASSES
        if cls not in (errors.RxllmError, errors.ProviderError)  # bases, never raised as such
    }
    assert named - {"the class of that"} == expected


@pytest.mark.parametrize("row", rule_book(), ids=lambda row: row[0])
def test_the_rule_books_retry_column_is_what_the_class_says(row: tuple[str, str, str]) -> None:
    failure, name, retry = row
    if name == "the class of that":  # an error event mid-stream: its status decides
        assert retry == ""
        return
    cls = getattr(errors, name)
    if cls is errors.TimeoutError:
        assert retry == "idle"
        assert errors.TimeoutError("t", phase="idle").retryable
        assert not errors.TimeoutError("t", phase="total").retryable
    else:
        assert retry == ("yes" if cls("x").retryable else "no"), failure

"""The error rule book: its shared rules (``providers/_common.py``), and the transport
failures the emulator cannot produce, on every provider over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anthropic
import grpc
import httpx2
import pytest
from xai_sdk.proto import chat_pb2

from rxllm import errors
from rxllm.events import TokenEvent
from rxllm.provider import Provider
from rxllm.providers._common import (
    ErrorRules,
    error_for_status,
    grpc_transport_failure,
    interrupted,
    transport_failure,
)
from rxllm.providers.anthropic import AnthropicProvider
from rxllm.providers.gemini import GeminiProvider
from rxllm.providers.grok import GrokProvider
from rxllm.providers.openai import OpenAIProvider
from tests.providers.support import run

KEY = "sk-rule-book-secret-0123456789"

# -- the status table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "cls"),
    [
        (400, "bad field", errors.InvalidRequestError),
        (422, "bad field", errors.InvalidRequestError),
        (400, "prompt is too long: 300000 tokens > 200000 maximum", errors.ContextTooLongError),
        (413, "request too large", errors.ContextTooLongError),
        (400, "API key not valid. Please pass a valid API key.", errors.AuthenticationError),
        (401, "invalid x-api-key", errors.AuthenticationError),
        (402, "billing", errors.InvalidRequestError),
        (403, "nope", errors.PermissionDeniedError),
        (404, "no such model", errors.ModelNotFoundError),
        (408, "request timeout", errors.ServerError),
        (429, "slow down", errors.RateLimitedError),
        (500, "oops", errors.ServerError),
        (502, "bad gateway", errors.ServerError),
        (503, "unavailable", errors.OverloadedError),
        (504, "gateway timeout", errors.ServerError),
        (529, "overloaded", errors.OverloadedError),
        ("INVALID_ARGUMENT", "Argument not supported", errors.InvalidRequestError),
        (
            "INVALID_ARGUMENT",
            "This model's maximum prompt length is 131072",
            errors.ContextTooLongError,
        ),
        ("INVALID_ARGUMENT", "Incorrect API key provided: xa***89", errors.AuthenticationError),
        ("FAILED_PRECONDITION", "x", errors.InvalidRequestError),
        ("OUT_OF_RANGE", "x", errors.InvalidRequestError),
        ("UNIMPLEMENTED", "x", errors.InvalidRequestError),
        ("ALREADY_EXISTS", "x", errors.InvalidRequestError),
        ("UNAUTHENTICATED", "x", errors.AuthenticationError),
        ("PERMISSION_DENIED", "x", errors.PermissionDeniedError),
        ("NOT_FOUND", "x", errors.ModelNotFoundError),
        ("RESOURCE_EXHAUSTED", "x", errors.RateLimitedError),
        ("UNAVAILABLE", "The service is currently unavailable", errors.OverloadedError),
        ("INTERNAL", "x", errors.ServerError),
        ("UNKNOWN", "x", errors.ServerError),
        ("DATA_LOSS", "x", errors.ServerError),
        ("ABORTED", "x", errors.ServerError),
        ("CANCELLED", "x", errors.StreamInterruptedError),
        ("DEADLINE_EXCEEDED", "x", errors.StreamInterruptedError),
    ],
)
def test_a_status_is_the_same_class_over_http_and_grpc(
    status: int | str, message: str, cls: type[errors.ProviderError]
) -> None:
    error = error_for_status(status, message, provider="p", model="m", retry_after=2.0)
    assert type(error) is cls
    assert (error.status, error.retry_after, error.provider, error.model) == (status, 2.0, "p", "m")


@pytest.mark.parametrize(
    ("details", "cls"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: "
            "Failed to connect to remote host: Connection refused",
            errors.ConnectionFailedError,
        ),
        (
            "DNS resolution failed for api.x.invalid:443: C-ares status is not ARES_SUCCESS",
            errors.ConnectionFailedError,
        ),
        ("Stream removed (Socket closed)", errors.StreamInterruptedError),
        ("Socket closed", errors.StreamInterruptedError),
        ("recvmsg:Connection reset by peer", errors.StreamInterruptedError),
        ("sendmsg: Broken pipe (32)", errors.StreamInterruptedError),
        (
            'GOAWAY received; Error code: 0; Debug Text: "server_shutdown"',
            errors.StreamInterruptedError,
        ),
        ("keepalive watchdog timeout", errors.StreamInterruptedError),
        ("The service is currently unavailable, please try again later.", None),
    ],
)
def test_grpcs_transport_messages_are_told_from_a_servers_unavailable(
    details: str, cls: type[errors.StreamInterruptedError] | None
) -> None:
    assert grpc_transport_failure(details) is cls


# -- the table mechanism ------------------------------------------------------------------


class VendorError(Exception):
    """An SDK's own exception, as a vendor table names it."""


class VendorConnectionError(VendorError):
    """An SDK's connection error, wrapping what the transport raised."""


RULES = ErrorRules(
    "Acme",
    [
        (VendorConnectionError, transport_failure),
        (VendorError, errors.ProviderError),
    ],
)


def mapped(failure: BaseException, *, reading: bool = False) -> BaseException:
    """What the scope raises for ``failure`` raised in its body."""
    try:
        with RULES.scope(provider="acme", model="m", secret=KEY, timeout=2.5) as scope:
            scope.reading = reading
            raise failure
    except BaseException as raised:  # the test inspects it
        return raised
    raise AssertionError("nothing raised")


def wrapped(outer: Exception, inner: BaseException) -> Exception:
    """``outer`` raised ``from inner``, as an SDK wraps a transport error."""
    try:
        try:
            raise inner
        except BaseException as error:
            raise outer from error
    except Exception as error:
        return error


@pytest.mark.parametrize(
    ("failure", "cls", "words"),
    [
        (
            ConnectionRefusedError(111, "Connection refused"),
            errors.ConnectionFailedError,
            "connect",
        ),
        (socket.gaierror(-2, "Name or service not known"), errors.ConnectionFailedError, "connect"),
        (httpx2.ConnectTimeout("timed out"), errors.ConnectionFailedError, "connect"),
        (
            wrapped(VendorConnectionError("Connection error."), httpx2.ConnectError("refused")),
            errors.ConnectionFailedError,
            "could not connect",
        ),
        (
            wrapped(VendorConnectionError("Connection error."), httpx2.ReadTimeout("")),
            errors.StreamInterruptedError,
            "timed out",
        ),
        (TimeoutError(), errors.StreamInterruptedError, "for 2.5 s"),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            errors.StreamInterruptedError,
            "broke",
        ),
        (
            httpx2.RemoteProtocolError("Server disconnected without sending a response."),
            errors.StreamInterruptedError,
            "before the response",
        ),
        (httpx2.DecodingError("bad gzip"), errors.StreamInterruptedError, "malformed event"),
        (VendorError("odd"), errors.ProviderError, "odd"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_a_failure_is_mapped_by_the_first_rule_that_claims_it(
    failure: Exception, cls: type[errors.RxllmError], words: str
) -> None:
    error = mapped(failure)
    assert type(error) is cls
    assert words in str(error)
    assert error.__cause__ is failure
    assert (error.provider, error.model) == ("acme", "m")


def test_rxllms_own_errors_and_cancellation_pass_through() -> None:
    own = errors.RateLimitedError("429", retry_after=1.0)
    assert mapped(own) is own
    timeout = errors.TimeoutError("idle", phase="idle")  # also an OSError, not a transport one
    assert mapped(timeout) is timeout
    cancelled = asyncio.CancelledError()
    assert mapped(cancelled) is cancelled


@pytest.mark.parametrize(
    "failure",
    [
        json.JSONDecodeError("Expecting value", "{", 1),
        KeyError("delta"),
        TypeError("string indices must be integers"),
        AttributeError("'str' object has no attribute 'get'"),
    ],
    ids=lambda failure: type(failure).__name__,
)
def test_while_reading_a_bad_value_is_a_malformed_event(failure: Exception) -> None:
    error = mapped(failure, reading=True)
    assert type(error) is errors.StreamInterruptedError
    assert "malformed event" in str(error)
    assert error.retryable


@pytest.mark.parametrize(
    "failure",
    [ValueError("bad option"), TypeError("create() got an unexpected keyword argument 'x'")],
    ids=lambda failure: type(failure).__name__,
)
def test_before_reading_a_bad_value_is_a_request_the_sdk_refused(failure: Exception) -> None:
    error = mapped(failure, reading=False)
    assert type(error) is errors.InvalidRequestError
    assert "refused the request" in str(error)
    assert not error.retryable


def test_what_no_rule_claims_is_still_an_rxllm_error_with_the_original_as_cause() -> None:
    # Most likely a bug: every failure of a stream still reaches the consumer as an
    # rxllm error (issue 10), not retryable, keeping the original for the traceback.
    for bug in (KeyError("x"), AttributeError("x"), ZeroDivisionError(f"x {KEY}")):
        error = mapped(bug)
        assert type(error) is errors.ProviderError
        assert error.__cause__ is bug
        assert not error.retryable
        assert type(bug).__name__ in str(error)
        assert KEY not in str(error)


def test_the_key_never_reaches_a_message() -> None:
    error = mapped(wrapped(VendorConnectionError(f"failed with {KEY}"), ConnectionResetError(KEY)))
    assert KEY not in str(error)
    assert KEY not in repr(error)


async def test_a_scope_around_an_async_generator_maps_what_its_body_raises() -> None:
    closed: list[str] = []

    async def events(failure: BaseException) -> AsyncGenerator[int, None]:
        try:
            with RULES.scope(provider="acme", model="m") as scope:
                scope.reading = True
                yield 1
                raise failure
        finally:
            closed.append("closed")

    stream = events(ConnectionResetError(104, "reset"))
    assert await stream.__anext__() == 1
    with pytest.raises(errors.StreamInterruptedError, match="mid-stream"):
        await stream.__anext__()
    # Closing it early (GeneratorExit at the yield) is not an error.
    early = events(ConnectionResetError())
    assert await early.__anext__() == 1
    await early.aclose()
    assert closed == ["closed", "closed"]


def test_grpcs_non_aio_rpc_error_is_interrupted() -> None:
    scope = RULES.scope(provider="acme", model="m")
    assert type(interrupted(grpc.RpcError(), scope)) is errors.StreamInterruptedError


# -- the transport rules on every provider, over real sockets -------------------------------

VENDORS = ["anthropic", "openai", "gemini", "gemini-sdk", "grok"]
MODELS = {
    "anthropic": "claude-haiku-4-5",
    "openai": "gpt-4o",
    "gemini": "gemini-2.5-flash",
    "gemini-sdk": "gemini-2.5-flash",
    "grok": "grok-4",
}


def build(vendor: str, port: int) -> Provider[Any]:
    host = f"127.0.0.1:{port}"
    if vendor == "anthropic":
        return AnthropicProvider(api_key=KEY, base_url=f"http://{host}")
    if vendor == "openai":
        return OpenAIProvider(api_key=KEY, base_url=f"http://{host}/v1")
    if vendor.startswith("gemini"):
        return GeminiProvider(api_key=KEY, base_url=f"http://{host}", raw_stream=vendor == "gemini")
    return GrokProvider(api_key=KEY, base_url=host)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def served(vendor: str, handler: Handler) -> tuple[list[Any], Exception | None]:
    """Run one request of ``vendor``'s provider against ``handler`` on a local socket."""
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away first
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    provider = build(vendor, server.sockets[0].getsockname()[1])
    try:
        return await run(provider, "Hi", model=MODELS[vendor])
    finally:
        await provider.aclose()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        server.close()
        await server.wait_closed()


async def read_request(
    vendor: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Read the request: HTTP/1.1 headers and body, or gRPC's HTTP/2 exchange up to it
    (the server's SETTINGS frame first, so the channel counts as connected)."""
    if vendor == "grok":
        await reader.read(65536)  # the client's preface and SETTINGS
        writer.write(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # an empty SETTINGS frame
        await writer.drain()
        await reader.read(65536)  # SETTINGS ack, HEADERS and DATA of the call
        await asyncio.sleep(0.05)
        return
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort with SO_LINGER 0: the peer gets an RST, not a clean close."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_connection_closed_before_the_first_byte_is_stream_interrupted(
    vendor: str,
) -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(vendor, reader, writer)
        writer.close()

    events, error = await served(vendor, close)
    assert events == []
    assert type(error) is errors.StreamInterruptedError, repr(error)
    assert error.retryable
    assert error.__cause__ is not None
    assert KEY not in str(error)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_connection_reset_before_the_first_byte_is_stream_interrupted(
    vendor: str,
) -> None:
    async def rst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(vendor, reader, writer)
        reset(writer)

    events, error = await served(vendor, rst)
    assert events == []
    assert type(error) is errors.StreamInterruptedError, repr(error)
    assert error.retryable


_SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
_ANTHROPIC_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
    b'"type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hello"}}\n\n'
)
_OPENAI_FIRST = (
    b'data: {"id":"1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n'
)
_GEMINI_FIRST = (
    b'data: {"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"},'
    b'"index":0}],"modelVersion":"gemini-2.5-flash"}\r\n\r\n'
)
# One good event, then one that is not JSON or not in the documented shape.
MALFORMED: dict[str, dict[str, bytes]] = {
    "not json": {
        "anthropic": _ANTHROPIC_START
        + b'event: content_block_delta\ndata: {"type":"content_block_delta","del\n\n',
        "openai": _OPENAI_FIRST + b'data: {"id":"1","choi\n\n',
        "gemini": _GEMINI_FIRST + b'data: {"candidates":[{"cont\r\n\r\n',
    },
    "wrong shape": {
        "anthropic": _ANTHROPIC_START
        + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n',
        "openai": _OPENAI_FIRST + b'data: {"id":"1","choices":"Hello"}\n\n',
        "gemini": _GEMINI_FIRST + b'data: {"candidates":"Hello"}\r\n\r\n',
    },
}


@pytest.mark.parametrize("kind", list(MALFORMED))
@pytest.mark.parametrize("vendor", [v for v in VENDORS if v != "grok"])
async def test_a_malformed_event_is_stream_interrupted_after_the_good_ones(
    vendor: str, kind: str
) -> None:
    body = MALFORMED[kind][vendor.removesuffix("-sdk")]

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(vendor, reader, writer)
        writer.write(_SSE_HEAD + body)
        await writer.drain()
        if (vendor, kind) == ("gemini-sdk", "wrong shape"):
            writer.close()  # the SDK swallows this event: only the end can end it
            return
        # Held open until the client leaves: it must fail on the bad event, not at EOF
        # (however slow the machine; the bound is only a safety net).
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            while await asyncio.wait_for(reader.read(4096), 30):
                pass
        writer.close()

    events, error = await served(vendor, respond)
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Hello"]
    assert type(error) is errors.StreamInterruptedError, repr(error)
    assert error.retryable
    if (vendor, kind) == ("gemini-sdk", "wrong shape"):
        # google-genai's own parsing makes each character of "Hello" an empty candidate:
        # nothing malformed reaches rxllm, and the stream ends without a finishReason.
        assert "without a finishReason" in str(error)
    else:
        assert "malformed event" in str(error)


@pytest.fixture
def grpc_garbage_server() -> Callable[[], Awaitable[tuple[grpc.aio.Server, int]]]:
    """A gRPC server whose ``GetCompletionChunk`` sends one good chunk, then bytes that
    are no ``GetChatCompletionChunk``."""

    async def chunks(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        good = chat_pb2.GetChatCompletionChunk(
            outputs=[
                chat_pb2.CompletionOutputChunk(
                    delta=chat_pb2.Delta(content="Hello", role=chat_pb2.MessageRole.ROLE_ASSISTANT)
                )
            ]
        )
        yield good.SerializeToString()
        yield b"\xff\xff\xff\xff"

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        handler = grpc.unary_stream_rpc_method_handler(chunks)  # raw bytes both ways
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("xai_api.Chat", {"GetCompletionChunk": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    return start


async def test_a_grpc_message_that_does_not_decode_is_a_malformed_event(
    grpc_garbage_server: Callable[[], Awaitable[tuple[grpc.aio.Server, int]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, port = await grpc_garbage_server()
    provider = build("grok", port)
    try:
        events, error = await run(provider, "Hi", model="grok-4")
    finally:
        await provider.aclose()
        await server.stop(None)
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Hello"]
    assert type(error) is errors.StreamInterruptedError, repr(error)
    assert "malformed event" in str(error)
    assert "Exception deserializing message!" in caplog.text  # grpc logs it and yields None


async def test_an_sdk_connection_error_is_told_apart_by_its_cause() -> None:
    # The SDKs wrap the transport's exception; the cause decides (anthropic here).
    refused = httpx2.ConnectError("All connection attempts failed")
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/messages")
    error = mapped_by_anthropic(wrapped(anthropic.APIConnectionError(request=request), refused))
    assert type(error) is errors.ConnectionFailedError
    timeout = wrapped(anthropic.APITimeoutError(request=request), httpx2.ReadTimeout("read"))
    assert type(mapped_by_anthropic(timeout)) is errors.StreamInterruptedError


def mapped_by_anthropic(failure: Exception) -> BaseException:
    from rxllm.providers import anthropic as module

    try:
        with module._ERRORS.scope(provider="anthropic", model="m", secret=KEY):
            raise failure
    except BaseException as raised:  # the test inspects it
        return raised
    raise AssertionError("nothing raised")

"""xAI Grok over gRPC on the official ``xai-sdk`` (``xai_sdk.AsyncClient``).

The SDK builds the request (``client.chat.create(...)`` and its request proto)
and authenticates (its channel interceptors add ``authorization: Bearer``);
the stream is read from the SDK's own generated stub,
``chat._stub.GetCompletionChunk(...)``, rather than ``chat.stream()``: the
latter wraps every chunk in two SDK objects, merges it into an accumulated
response proto and runs an OpenTelemetry span around the iteration (whose
context detach fails with an error log when the generator is closed from
another task). rxllm reads the chunk protos directly and keeps the call
object, so it can cancel it.

Mapping:

- request: the system prompt becomes a leading ``system`` message, then the
  conversation (a trailing ``assistant`` turn is a prefill the model
  continues): user parts as the SDK's ``text(...)`` / ``image(url, detail="auto")``
  contents (an image given as bytes goes as a ``data:`` URL; PNG and JPEG only,
  what api.x.ai decodes, GIF / WebP are refused before the request; no documents:
  ``content_parts`` is ``image`` and ``image_url``); an assistant turn's calls as
  its ``tool_calls`` (``TOOL_CALL_TYPE_CLIENT_SIDE_TOOL``, status completed, the
  arguments as compact JSON text; server-side calls are left out, their results
  live on xAI's side only); a ``tool`` turn as the SDK's ``tool_result(content,
  tool_call_id=...)`` (``ROLE_TOOL``; xAI has no error flag, so ``is_error`` is not
  sent: the content says it). ``tools`` → the SDK's ``tool(name, description,
  parameters)`` (``Function.parameters`` is the JSON Schema as text);
  ``tool_choice`` → ``ToolChoice.mode`` (``"auto"`` / ``"none"`` /
  ``"required"``) or ``required_tool(name)`` (``ToolChoice.function_name``);
  ``parallel_tool_calls`` → the request field of that name; ``response_format`` →
  ``ResponseFormat(format_type=FORMAT_TYPE_JSON_SCHEMA, schema=<JSON text>)``, the
  reply's JSON streaming as ``content`` like any text.
  ``temperature``, ``max_tokens``, ``stop``; ``reasoning`` →
  ``reasoning_effort`` only on models that accept it (``grok-3-mini``: ``low``
  / ``high``, ``True`` → ``low``, ``medium`` → ``high``; ``grok-4.3`` and
  later: the level as given). Other Grok models reason, or not, by model
  choice and answer INVALID_ARGUMENT to the parameter. ``request.options``
  pass through to ``chat.create``, except ``options["tools"]``: xAI's server-side
  tools (``xai_sdk.tools.web_search()``, ``x_search()``, ``code_execution()``, ...),
  offered next to ``request.tools``.
- chunks: assistant ``delta.reasoning_content`` → ``ReasoningEvent``,
  ``delta.content`` → ``TokenEvent`` (tool outputs of server-side tools, the
  ``ROLE_TOOL`` outputs, are skipped). ``delta.tool_calls`` arrive whole, one
  call per ``ToolCall`` (several may share a delta): a client-side one
  (``TOOL_CALL_TYPE_CLIENT_SIDE_TOOL``) is one ``ToolCallDeltaEvent`` with its id,
  name and whole ``function.arguments`` text, then, when its status says
  ``TOOL_CALL_STATUS_COMPLETED`` (as api.x.ai sends it), its ``ToolCallEvent``
  at once (a call not marked complete, e.g. cut by ``max_tokens``, is left to the
  generic layer). ``REASON_TOOL_CALLS`` → ``FinishReason.TOOL_CALLS``.
- server-side tools: the model's call arrives on an assistant output with the
  tool's own type (``TOOL_CALL_TYPE_WEB_SEARCH_TOOL``, ``..._X_SEARCH_TOOL``,
  ``..._CODE_EXECUTION_TOOL``, ...; the function name is xAI's internal one, e.g.
  ``web_search_with_snippets``) → one ``ToolCallEvent(server_side=True)`` (its
  arguments parsed; the index shared with client calls); that output even ends
  with ``REASON_TOOL_CALLS``, but xAI runs the tool itself: a ``ROLE_TOOL``
  output echoes the call (skipped) and the answer follows on a later output
  index, whose finish reason (``REASON_STOP``) is the one that counts.
  Usage is cumulative on every chunk: the last one counts. xAI's
  ``completion_tokens`` excludes reasoning, so rxllm's completion tokens are
  ``completion_tokens + reasoning_tokens``. ``cost_in_usd_ticks``, when sent,
  is the cost (1 tick = 1e-10 USD).
- end: the last assistant output must carry a finish reason; a stream that
  ends without one (the SDK reports success) is
  :class:`rxllm.errors.StreamInterruptedError`. ``done.details`` has the raw
  ``finish_reason``, the response ``id`` and ``cached_prompt_tokens``.
- errors: bare ``grpc.aio.AioRpcError``; the status code decides the class by
  the rule book every provider shares (``rxllm.errors``), ``retry_after`` comes
  from ``google.rpc.RetryInfo`` in ``grpc-status-details-bin`` (or a
  ``retry-after`` trailer). UNAVAILABLE is an overload when the server says so;
  when its details are grpc's own transport message it is the connection:
  ``ConnectionFailedError`` ("failed to connect to all addresses") or
  ``StreamInterruptedError`` ("Socket closed", "Connection reset", ...), before
  the first chunk as after it.

The SDK's hidden retries are off (channel option ``grpc.enable_retries=0``;
its default service config retries UNAVAILABLE five times): retrying is the
job of rxllm's ``retry_on_interrupt`` operator, where it is visible and
composable. So is its deadline for the whole call (27 minutes unless set):
``timeout=`` is, as on every provider, a limit per read, the longest wait for
the next message (the first one includes connecting and the headers); a call
silent for longer is cancelled and ends with ``StreamInterruptedError``
(status ``DEADLINE_EXCEEDED``). ``max_connections`` limits the calls streaming
at once (gRPC multiplexes them over one connection); more wait for a slot.
``base_url`` is the gRPC ``host:port``; a loopback host is plaintext, anything
else TLS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from xai_sdk import AsyncClient
from xai_sdk.chat import image, required_tool, system, text, tool, tool_result, user
from xai_sdk.proto import chat_pb2, sample_pb2

from .. import errors
from ..content import ImagePart, Part, TextPart
from ..events import (
    DoneEvent,
    FinishReason,
    ReasoningEvent,
    StreamEvent,
    TokenEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    Usage,
)
from ..provider import Provider
from ..request import Message, StreamRequest
from ..tools import complete_call
from ..vendors import vendor
from ._common import ErrorRules, ErrorScope, ReadLimit, grpc_transport_failure, interrupted

__all__ = ["GrokProvider"]

_ASSISTANT = chat_pb2.MessageRole.ROLE_ASSISTANT
_USD_PER_TICK = 1e-10
_CLIENT_SIDE = chat_pb2.ToolCallType.TOOL_CALL_TYPE_CLIENT_SIDE_TOOL
_UNTYPED = chat_pb2.ToolCallType.TOOL_CALL_TYPE_INVALID
_COMPLETED = chat_pb2.ToolCallStatus.TOOL_CALL_STATUS_COMPLETED
# The image types api.x.ai decodes (the SDK's ``image()``: "PNG and JPG").
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg"})

_FINISH: dict[int, FinishReason] = {
    sample_pb2.FinishReason.REASON_STOP: FinishReason.STOP,
    sample_pb2.FinishReason.REASON_MAX_LEN: FinishReason.LENGTH,
    # The context window filled up while generating: the reply was cut, as by max_tokens.
    sample_pb2.FinishReason.REASON_MAX_CONTEXT: FinishReason.LENGTH,
    # The server's own generation time limit: also a reply cut short.
    sample_pb2.FinishReason.REASON_TIME_LIMIT: FinishReason.LENGTH,
    sample_pb2.FinishReason.REASON_TOOL_CALLS: FinishReason.TOOL_CALLS,
}

# A read that timed out cancels the call, as an expired gRPC deadline would: the status
# the errors carry, as for a server's own DEADLINE_EXCEEDED.
_READ_TIMEOUT_STATUS = grpc.StatusCode.DEADLINE_EXCEEDED.name

# Models that take ``reasoning_effort``; the others answer INVALID_ARGUMENT to it.
_TAKES_EFFORT = re.compile(r"^grok-3-mini|^grok-4\.[3-9](?![0-9])")
_LOW_HIGH_ONLY = re.compile(r"^grok-3-mini")


def _rpc_error(error: grpc.aio.AioRpcError, scope: ErrorScope) -> errors.ProviderError:
    """A gRPC status: grpc's own transport failures, else the status by the rule book.

    api.x.ai answers a wrong key with INVALID_ARGUMENT (the REST API with 400) and
    echoes it masked ("xa***10"): the shared table makes that an authentication failure,
    and the scrubbing removes even the mask.
    """
    code = error.code()
    details = error.details() or ""
    said = f"{code.name}: {details}"  # str(error) is a multi-line dump
    if code == grpc.StatusCode.UNAVAILABLE:
        cut = grpc_transport_failure(details)
        if cut is errors.ConnectionFailedError:
            return scope.connection_failed(said, status=code.name)
        if cut is not None:
            return scope.interrupted(said, status=code.name)
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return scope.timed_out(said, status=code.name)  # a deadline a server or proxy set
    return scope.status_error(code.name, details or code.name, retry_after=_retry_after(error))


# The SDK's exceptions → rxllm's (then the rules every vendor shares, in ``_common``).
_ERRORS = ErrorRules(
    "xAI",
    [
        (grpc.aio.AioRpcError, _rpc_error),
        (grpc.RpcError, interrupted),  # not an AioRpcError: a transport-level failure
    ],
)


class _Client(AsyncClient):  # type: ignore[misc]  # xai-sdk is untyped
    """xai-sdk's client without a deadline per call, and a limit on concurrent streams.

    The SDK puts its ``timeout`` (27 minutes unless set) on every call as a gRPC
    deadline, which cuts a long healthy stream: rxllm's ``timeout=`` is a limit per
    read, applied by the provider, so the calls go without one.

    gRPC multiplexes every call over one HTTP/2 connection, so ``max_connections`` has
    no pool to size: it is the number of calls streaming at once (``streams``, for this
    client's event loop). More wait for a slot before their call starts.
    """

    def __init__(self, *, max_streams: int, **options: Any) -> None:
        super().__init__(**options)
        self.streams = asyncio.Semaphore(max_streams)

    def _make_grpc_channel(
        self,
        api_key: str,
        api_host: str,
        metadata: tuple[tuple[str, str], ...] | None,
        channel_options: Any,
        timeout: float,
        use_insecure_channel: bool,
    ) -> grpc.aio.Channel:
        # The SDK's timeout interceptors replace each call's timeout with theirs: None.
        channel: grpc.aio.Channel = super()._make_grpc_channel(
            api_key, api_host, metadata, channel_options, None, use_insecure_channel
        )
        return channel


class GrokProvider(Provider[_Client]):
    """xAI Grok, streamed over gRPC.

    Example:
        >>> provider = rxllm.provider("grok")  # reads XAI_API_KEY (and XAI_BASE_URL, a host:port)
        >>> text = await provider.generate("Write a haiku", model="grok-4")
    """

    spec = vendor("grok")
    prices_done: ClassVar[bool] = True
    content_parts = frozenset({"image", "image_url"})

    def _make_client(self) -> _Client:
        host, secure = _address(self.base_url)
        channel_options: list[tuple[str, Any]] = [
            # xai-sdk's default service config retries UNAVAILABLE 5 times: hidden retries.
            ("grpc.enable_retries", 0),
            *self.options.get("channel_options", ()),
        ]
        options: dict[str, Any] = {"channel_options": channel_options}
        if "metadata" in self.options:
            options["metadata"] = tuple(self.options["metadata"])
        return _Client(
            api_key=self.api_key.get_secret_value(),
            api_host=host,
            use_insecure_channel=not secure,
            max_streams=self.max_connections,
            **options,
        )

    async def _close_client(self, client: _Client) -> None:
        await client.close()

    def _params(self, request: StreamRequest) -> dict[str, Any]:
        messages: list[Any] = []
        system_prompt = request.system_prompt()
        if system_prompt is not None:
            messages.append(system(system_prompt))
        for message in request.conversation():
            messages.append(self._message(message, request.model))
        params: dict[str, Any] = {"model": request.model, "messages": messages}
        tools = [tool(t.name, t.description, dict(t.parameters)) for t in request.tools]
        if request.tool_choice is not None:
            choice = request.tool_choice
            params["tool_choice"] = (
                choice if choice in ("auto", "none", "required") else required_tool(choice)
            )
        if request.parallel_tool_calls is not None:
            params["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format is not None:
            params["response_format"] = chat_pb2.ResponseFormat(
                format_type=chat_pb2.FormatType.FORMAT_TYPE_JSON_SCHEMA,
                schema=json.dumps(dict(request.response_format.schema)),
            )
        if request.temperature is not None:
            params["temperature"] = float(request.temperature)
        max_tokens = self.max_tokens(request)
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if request.stop:
            params["stop"] = list(request.stop)
        effort = _reasoning_effort(request)
        if effort is not None:
            params["reasoning_effort"] = effort
        options = dict(request.options)
        tools.extend(options.pop("tools", None) or ())  # server-side tools, as the SDK makes them
        if tools:
            params["tools"] = tools
        params.update(options)
        return params

    def _message(self, message: Message, model: str) -> Any:
        """One conversation turn as the SDK's message proto."""
        if message.role == "tool":
            return tool_result(message.text, tool_call_id=message.tool_call_id)
        if message.role == "assistant":
            # What the SDK's chat.append(response) sends back: the text and the calls.
            return chat_pb2.Message(
                role=_ASSISTANT,
                content=[text(message.text)],
                tool_calls=[
                    chat_pb2.ToolCall(
                        id=call.id,
                        type=_CLIENT_SIDE,
                        status=_COMPLETED,
                        function=chat_pb2.FunctionCall(
                            name=call.name, arguments=call.arguments_json()
                        ),
                    )
                    for call in message.tool_calls
                    if not call.server_side
                ],
            )
        if isinstance(message.content, str):
            return user(message.content)
        return user(*(self._part(part, model) for part in message.content))

    def _part(self, part: Part, model: str) -> Any:
        if isinstance(part, TextPart):
            return text(part.text)
        if isinstance(part, ImagePart):
            if part.data is None:
                return image(part.url)
            if part.media_type in _IMAGE_TYPES:
                return image(part.data_url())
        raise errors.UnsupportedContentError(
            f"{self.name} cannot take {part.describe()}; it takes PNG and JPEG images "
            "(bytes or URL), no documents",
            provider=self.name,
            model=model,
        )

    async def _batches(self, request: StreamRequest) -> AsyncIterator[list[StreamEvent]]:
        model = request.model
        last: Any = None
        finish = 0
        call: Any = None
        read_limit: ReadLimit | None = None
        calls = _Calls(self.name, model)
        limit = self.timeout
        with _ERRORS.scope(
            provider=self.name,
            model=model,
            secret=self.api_key.get_secret_value(),
            timeout=limit,
        ) as scope:
            client = self.client()
            # A slot first (max_connections); waiting for one is not a read.
            await client.streams.acquire()
            try:
                chat = client.chat.create(**self._params(request))
                # The SDK's request proto (as chat.stream() sends it), on the SDK's own stub.
                call = chat._stub.GetCompletionChunk(chat._make_request(1))
                scope.reading = True
                # The limit per read: the wait for each message (the first one includes
                # connecting and the response headers), not the whole call.
                read_limit = ReadLimit(limit)
                while True:
                    read_limit.reading()
                    try:
                        chunk = await call.read()
                    except asyncio.CancelledError:
                        try:
                            read_limit.raise_if_expired()
                        except TimeoutError as error:
                            raise scope.timed_out(error, status=_READ_TIMEOUT_STATUS) from error
                        raise
                    finally:
                        read_limit.done()
                    if chunk is grpc.aio.EOF:
                        break
                    batch: list[StreamEvent] = []  # this message's events
                    for output in chunk.outputs:
                        delta = output.delta
                        if delta.role != _ASSISTANT:
                            continue  # server-side tool outputs (ROLE_TOOL)
                        reasoning = delta.reasoning_content
                        if reasoning:
                            batch.append(ReasoningEvent(reasoning))
                        content = delta.content
                        if content:
                            batch.append(TokenEvent(content))
                        if delta.tool_calls:
                            batch.extend(calls.read(delta.tool_calls))
                        finish = output.finish_reason
                    last = chunk
                    if batch:
                        yield batch
            finally:
                if read_limit is not None:
                    read_limit.close()
                # Cancelling the call is what closes the HTTP/2 stream; breaking out of an
                # xai-sdk iteration does not (the bridge cancels this task on dispose).
                if call is not None and not call.done():
                    call.cancel()
                client.streams.release()
            if last is None or finish == 0:
                raise scope.incomplete("a finish reason")
            yield [self._priced(_done(last, finish, model, self.name), request)]


class _Calls:
    """The tool calls of one reply, numbered in the order they arrive (client and
    server side alike); a call xAI repeats (same id) is reported once."""

    __slots__ = ("model", "provider", "seen")

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.seen: dict[str, int] = {}

    def read(self, tool_calls: Any) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for call in tool_calls:
            function = call.function
            if call.id and call.id in self.seen:
                continue
            index = len(self.seen)
            self.seen[call.id or f"#{index}"] = index
            arguments = function.arguments
            if call.type in (_CLIENT_SIDE, _UNTYPED):
                out.append(ToolCallDeltaEvent(index, arguments, call.id or None, function.name))
                if call.status == _COMPLETED:
                    out.append(
                        complete_call(
                            index=index,
                            call_id=call.id or None,
                            name=function.name,
                            arguments=arguments,
                            provider=self.provider,
                            model=self.model,
                        )
                    )
                continue
            # A server-side tool: xAI runs it; reported, never run locally.
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                parsed = None
            out.append(
                ToolCallEvent(
                    id=call.id,
                    name=function.name,
                    arguments=parsed if isinstance(parsed, dict) else {"arguments": arguments},
                    index=index,
                    server_side=True,
                )
            )
        return out


def _address(base_url: str | None) -> tuple[str, bool]:
    """``(host:port, use TLS)`` from a ``base_url`` (``host:port``, a scheme is tolerated)."""
    if not base_url:
        return "api.x.ai", True
    scheme, sep, rest = base_url.partition("://")
    address = (rest if sep else base_url).rstrip("/")
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if sep and scheme.lower() in ("https", "grpcs"):
        return address, True
    if sep and scheme.lower() in ("http", "grpc"):
        return address, False
    return address, not _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reasoning_effort(request: StreamRequest) -> str | None:
    if not request.reasoning or not _TAKES_EFFORT.search(request.model):
        return None
    effort = "low" if request.reasoning is True else request.reasoning
    if effort == "medium" and _LOW_HIGH_ONLY.search(request.model):
        return "high"  # grok-3-mini knows only low (its default) and high
    return effort


def _retry_after(error: grpc.aio.AioRpcError) -> float | None:
    """Seconds from ``google.rpc.RetryInfo`` in the status details, or a ``retry-after``."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # malformed details carry no retry info
                continue
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    seconds: float = info.retry_delay.ToTimedelta().total_seconds()
                    return max(0.0, seconds)
        elif key == "retry-after" and isinstance(value, str):
            try:
                return max(0.0, float(value))
            except ValueError:
                continue
    return None


def _done(last: Any, finish: int, model: str, provider: str) -> DoneEvent:
    usage = last.usage
    reasoning = usage.reasoning_tokens
    details: dict[str, Any] = {
        "finish_reason": sample_pb2.FinishReason.Name(finish),
        "id": last.id,
    }
    if usage.cached_prompt_text_tokens:
        details["cached_prompt_tokens"] = usage.cached_prompt_text_tokens
    cost = usage.cost_in_usd_ticks * _USD_PER_TICK if usage.HasField("cost_in_usd_ticks") else None
    return DoneEvent(
        usage=Usage(
            prompt_tokens=usage.prompt_tokens,
            # xAI counts reasoning apart from completion; rxllm's completion includes it.
            completion_tokens=usage.completion_tokens + reasoning,
            reasoning_tokens=reasoning,
            cost=cost,
        ),
        finish_reason=_FINISH.get(finish, FinishReason.STOP),
        model=last.model or model,
        provider=provider,
        details=details,
    )

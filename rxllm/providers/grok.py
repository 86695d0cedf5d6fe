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
  continues); ``temperature``, ``max_tokens``, ``stop``; ``reasoning`` →
  ``reasoning_effort`` only on models that accept it (``grok-3-mini``: ``low``
  / ``high``, ``True`` → ``low``, ``medium`` → ``high``; ``grok-4.3`` and
  later: the level as given). Other Grok models reason, or not, by model
  choice and answer INVALID_ARGUMENT to the parameter. ``request.options``
  pass through to ``chat.create``.
- chunks: assistant ``delta.reasoning_content`` → ``ReasoningEvent``,
  ``delta.content`` → ``TokenEvent`` (tool outputs of server-side tools are
  skipped). Usage is cumulative on every chunk: the last one counts. xAI's
  ``completion_tokens`` excludes reasoning, so rxllm's completion tokens are
  ``completion_tokens + reasoning_tokens``. ``cost_in_usd_ticks``, when sent,
  is the cost (1 tick = 1e-10 USD).
- end: the last assistant output must carry a finish reason; a stream that
  ends without one (the SDK reports success) is
  :class:`rxllm.errors.InterruptedError`. ``done.details`` has the raw
  ``finish_reason``, the response ``id`` and ``cached_prompt_tokens``.
- errors: bare ``grpc.aio.AioRpcError``; the status code decides the class,
  ``retry_after`` comes from ``google.rpc.RetryInfo`` in
  ``grpc-status-details-bin`` (or a ``retry-after`` trailer). UNAVAILABLE
  before the first chunk is an overload, after it a lost connection
  (interrupted).

The SDK's hidden retries are off (channel option ``grpc.enable_retries=0``;
its default service config retries UNAVAILABLE five times): retrying is the
job of rxllm's ``retry_on_interrupt`` operator, where it is visible and
composable. ``base_url`` is the gRPC ``host:port``; a loopback host is
plaintext, anything else TLS.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from xai_sdk import AsyncClient
from xai_sdk.chat import assistant, system, user
from xai_sdk.proto import chat_pb2, sample_pb2

from .. import errors
from ..events import DoneEvent, FinishReason, ReasoningEvent, StreamEvent, TokenEvent, Usage
from ..provider import Provider
from ..request import StreamRequest
from ..vendors import vendor
from ._common import is_context_too_long, scrub

__all__ = ["GrokProvider"]

_ASSISTANT = chat_pb2.MessageRole.ROLE_ASSISTANT
_USD_PER_TICK = 1e-10

_FINISH: dict[int, FinishReason] = {
    sample_pb2.FinishReason.REASON_STOP: FinishReason.STOP,
    sample_pb2.FinishReason.REASON_MAX_LEN: FinishReason.LENGTH,
    # The context window filled up while generating: the reply was cut, as by max_tokens.
    sample_pb2.FinishReason.REASON_MAX_CONTEXT: FinishReason.LENGTH,
    # The server's own generation time limit: also a reply cut short.
    sample_pb2.FinishReason.REASON_TIME_LIMIT: FinishReason.LENGTH,
    sample_pb2.FinishReason.REASON_TOOL_CALLS: FinishReason.TOOL_CALLS,
}

_STATUS: dict[grpc.StatusCode, type[errors.ProviderError]] = {
    grpc.StatusCode.UNAUTHENTICATED: errors.AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDeniedError,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidRequestError,
    grpc.StatusCode.UNIMPLEMENTED: errors.InvalidRequestError,
    grpc.StatusCode.ALREADY_EXISTS: errors.InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: errors.ModelNotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.RateLimitedError,
    grpc.StatusCode.UNAVAILABLE: errors.OverloadedError,
    grpc.StatusCode.INTERNAL: errors.ServerError,
    grpc.StatusCode.UNKNOWN: errors.ServerError,
    grpc.StatusCode.DATA_LOSS: errors.ServerError,
    grpc.StatusCode.ABORTED: errors.ServerError,
    # The SDK's own deadline (its read timeout) or a call cancelled on the server's side.
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.InterruptedError,
    grpc.StatusCode.CANCELLED: errors.InterruptedError,
}

# api.x.ai answers a wrong key with INVALID_ARGUMENT (the REST API with 400) and echoes
# the key masked ("xa***10"): that is an authentication failure, and even the mask goes.
_WRONG_KEY = re.compile(r"incorrect api key|invalid api key|api key (is )?(invalid|missing)", re.I)
# Models that take ``reasoning_effort``; the others answer INVALID_ARGUMENT to it.
_TAKES_EFFORT = re.compile(r"^grok-3-mini|^grok-4\.[3-9](?![0-9])")
_LOW_HIGH_ONLY = re.compile(r"^grok-3-mini")


class GrokProvider(Provider[AsyncClient]):
    """xAI Grok, streamed over gRPC.

    Example:
        >>> provider = rxllm.provider("grok")  # reads XAI_API_KEY (and XAI_BASE_URL, a host:port)
        >>> text = await provider.generate("Write a haiku", model="grok-4")
    """

    spec = vendor("grok")

    def _make_client(self) -> AsyncClient:
        host, secure = _address(self.base_url)
        channel_options: list[tuple[str, Any]] = [
            # xai-sdk's default service config retries UNAVAILABLE 5 times: hidden retries.
            ("grpc.enable_retries", 0),
            *self.options.get("channel_options", ()),
        ]
        options: dict[str, Any] = {"channel_options": channel_options}
        if "metadata" in self.options:
            options["metadata"] = tuple(self.options["metadata"])
        if self.timeout is not None:
            options["timeout"] = self.timeout
        return AsyncClient(
            api_key=self.api_key.get_secret_value(),
            api_host=host,
            use_insecure_channel=not secure,
            **options,
        )

    async def _close_client(self, client: AsyncClient) -> None:
        await client.close()

    def _params(self, request: StreamRequest) -> dict[str, Any]:
        messages: list[Any] = []
        system_prompt = request.system_prompt()
        if system_prompt is not None:
            messages.append(system(system_prompt))
        for message in request.conversation():
            messages.append((assistant if message.role == "assistant" else user)(message.content))
        params: dict[str, Any] = {"model": request.model, "messages": messages}
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
        params.update(request.options)
        return params

    async def _events(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        model = request.model
        try:
            chat = self.client().chat.create(**self._params(request))
            # The SDK's request proto (as chat.stream() sends it), on the SDK's own stub.
            call = chat._stub.GetCompletionChunk(chat._make_request(1))
        except (ValueError, TypeError) as error:
            raise errors.InvalidRequestError(
                self._clean(f"xai-sdk refused the request: {error}"),
                provider=self.name,
                model=model,
            ) from error
        last: Any = None
        finish = 0
        try:
            async for chunk in call:
                for output in chunk.outputs:
                    delta = output.delta
                    if delta.role != _ASSISTANT:
                        continue  # server-side tool outputs (ROLE_TOOL)
                    reasoning = delta.reasoning_content
                    if reasoning:
                        yield ReasoningEvent(reasoning)
                    content = delta.content
                    if content:
                        yield TokenEvent(content)
                    finish = output.finish_reason
                last = chunk
        except grpc.aio.AioRpcError as error:
            raise self._error(error, model, streamed=last is not None) from error
        except grpc.RpcError as error:  # not an AioRpcError: a transport-level failure
            raise errors.InterruptedError(
                self._clean(f"the gRPC call failed: {error}"), provider=self.name, model=model
            ) from error
        finally:
            # Cancelling the call is what closes the HTTP/2 stream; breaking out of an
            # xai-sdk iteration does not (the bridge cancels this task on dispose).
            if not call.done():
                call.cancel()
        if last is None or finish == 0:
            raise errors.InterruptedError(
                "the stream ended without a finish reason: the reply is incomplete",
                provider=self.name,
                model=model,
            )
        yield _done(last, finish, model, self.name)

    # -- errors -----------------------------------------------------------------------------

    def _clean(self, message: str) -> str:
        return scrub(message, self.api_key.get_secret_value())

    def _error(
        self, error: grpc.aio.AioRpcError, model: str, *, streamed: bool
    ) -> errors.ProviderError:
        """The rxllm error for a gRPC status (``streamed``: chunks had already arrived)."""
        code = error.code()
        details = error.details() or ""
        text = self._clean(details or code.name)
        cls = _STATUS.get(code, errors.ServerError)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            if _WRONG_KEY.search(details):
                cls = errors.AuthenticationError
            elif is_context_too_long(details):
                cls = errors.ContextTooLongError
        elif code == grpc.StatusCode.UNAVAILABLE and streamed:
            cls = errors.InterruptedError  # the connection was lost mid-stream
        return cls(
            text,
            provider=self.name,
            model=model,
            status=code.name,
            retry_after=_retry_after(error),
        )


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

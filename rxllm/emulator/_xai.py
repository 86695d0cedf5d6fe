"""xAI dialect: the ``xai_api.Chat`` and ``xai_api.Models`` gRPC services on grpc.aio.

The services are registered with the code generated inside the ``xai-sdk``
package itself (``xai_sdk.proto``: servicer classes, ``add_*_to_server``,
message classes), so method paths and message layouts cannot drift from what
the SDK sends and parses.

What the real service does, and so this dialect (see the wire captures in
``tests/fixtures/xai``):

- ``GetCompletionChunk`` (``chat.stream()``): every chunk carries the response
  id, creation time, model, system fingerprint and the **running usage**; each
  delta says ``role: ROLE_ASSISTANT``; ``reasoning_content`` deltas come first
  (``completion_tokens`` stays 0 while ``reasoning_tokens`` grows), then
  ``content`` deltas; the last chunk has an empty delta and the finish reason
  (``REASON_STOP`` / ``REASON_MAX_LEN``). ``total_tokens`` is prompt +
  completion + reasoning: xAI's ``completion_tokens`` excludes reasoning.
- Tool calls (the ``xai_tool_call`` capture): the request's ``tools``
  (``Function.parameters`` a JSON Schema as text), ``tool_choice`` (``mode`` or
  ``function_name``) and ``response_format`` (``FORMAT_TYPE_JSON_SCHEMA`` with
  ``schema`` as text, or ``FORMAT_TYPE_JSON_OBJECT``) are read into the plan.
  The calls of a round arrive whole, all in **one** assistant delta: each a
  ``ToolCall`` with ``id`` ``call_<8 digits>``, ``type:
  TOOL_CALL_TYPE_CLIENT_SIDE_TOOL``, ``status: TOOL_CALL_STATUS_COMPLETED`` and
  ``function {name, arguments}`` (compact JSON text); then an empty delta with
  ``REASON_TOOL_CALLS``. ``max_tokens`` cutting inside the arguments sends the
  call cut, ``TOOL_CALL_STATUS_INCOMPLETE``, and ``REASON_MAX_LEN`` (no capture
  shows what api.x.ai does there). Mid-stream faults count each argument token
  as a content event: a fault inside a call sends the calls before it, not that
  one. Assistant turns' ``tool_calls`` and ``ROLE_TOOL`` results
  (``tool_call_id``) are read back into the conversation. A structured reply is
  the schema's JSON, streamed as ``content``.
- Images: ``Content.image_url`` with an ``http(s)`` URL or a ``data:image/png``
  / ``data:image/jpeg`` base64 URL; anything else is INVALID_ARGUMENT (the
  wording is ours, modelled on the REST API's "Invalid request content").
- ``GetCompletion`` (``chat.sample()``): the same as one response.
- Errors are gRPC statuses: UNAUTHENTICATED (no or wrong ``authorization:
  Bearer`` key), RESOURCE_EXHAUSTED (with ``google.rpc.RetryInfo`` in
  ``grpc-status-details-bin``), UNAVAILABLE, INTERNAL, INVALID_ARGUMENT,
  NOT_FOUND.

Faults mid-stream: ``drop`` ends the call with UNAVAILABLE "Stream removed
(Socket closed)", exactly what the SDK reports when a proxy cuts the TCP
connection mid-stream (measured; grpc's server API cannot cut one connection),
``truncate`` ends the call OK without the finish chunk, ``error_event`` ends
it with INTERNAL "Stream removed" after some chunks (the xai_abort capture),
``stall`` sends nothing more until the client cancels. A client cancel is recorded as a disconnect.

Chunks are pre-encoded: the per-response fields are serialized once per
request and each chunk is those bytes plus its delta and usage (protobuf
allows concatenating encodings; the field order stays the canonical one).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2, json_format, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from xai_sdk.proto import (
    chat_pb2,
    chat_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    sample_pb2,
    usage_pb2,
)

from ._behaviour import KNOB_HEADER, Behaviour
from ._content import Offered, Plan, PlannedCall, plan_reply
from ._state import EmulatorState, Pacer, RecordedRequest

__all__ = ["XaiServer", "start"]

_CHAT = "xai_api.Chat"
_STREAM_PATH = f"/{_CHAT}/GetCompletionChunk"
_UNARY_PATH = f"/{_CHAT}/GetCompletion"
_FINGERPRINT = "fp_e3d1a7c0b5"
_TEAM = "0e7c5b1a-8d2f-4c3e-9a6b-emulator0000"
_ASSISTANT = chat_pb2.MessageRole.ROLE_ASSISTANT
_FINISH = {
    "stop": sample_pb2.FinishReason.REASON_STOP,
    "length": sample_pb2.FinishReason.REASON_MAX_LEN,
    "tool_calls": sample_pb2.FinishReason.REASON_TOOL_CALLS,
}
_TOOL = chat_pb2.MessageRole.ROLE_TOOL
_CLIENT_SIDE = chat_pb2.ToolCallType.TOOL_CALL_TYPE_CLIENT_SIDE_TOOL
_COMPLETED = chat_pb2.ToolCallStatus.TOOL_CALL_STATUS_COMPLETED
_INCOMPLETE = chat_pb2.ToolCallStatus.TOOL_CALL_STATUS_INCOMPLETE
_MODES = {
    chat_pb2.ToolMode.TOOL_MODE_AUTO: "auto",
    chat_pb2.ToolMode.TOOL_MODE_NONE: "none",
    chat_pb2.ToolMode.TOOL_MODE_REQUIRED: "required",
}
_DATA_URL = re.compile(r"^data:(image/(?:png|jpeg|jpg));base64,(.+)$", re.S)
_MAX_PROMPT_LENGTH = 131072

# Messages of the real service (see tests/fixtures/xai and the SOURCES table there).
_NO_AUTH = "No authorization header or an invalid authorization token is provided."
_BAD_KEY = (
    "Incorrect API key provided: {masked}. You can obtain an API key from https://console.x.ai."
)
_RATE_LIMITED = "Too many requests for team {team} and model {model}. Please retry later."
_UNAVAILABLE = "The service is currently unavailable, please try again later."
_INTERNAL = "An internal error occurred. Please try again later."
_INVALID_ARGUMENT = "Argument not supported on this model: presencePenalty"
_CONTEXT = "This model's maximum prompt length is {limit} but the request contains {count} tokens."
_NOT_FOUND = "The model {model} does not exist or your team {team} does not have access to it."
_NO_EFFORT = "Model {model} does not support parameter reasoningEffort."
_DROPPED = "Stream removed (Socket closed)"
_STREAM_REMOVED = "Stream removed"

# Models that answer INVALID_ARGUMENT to ``reasoning_effort`` (they reason, or not, by
# model choice); grok-3-mini and grok-4.3+ accept it.
_REJECTS_EFFORT = re.compile(
    r"^grok-4(-0709|-latest)?$|^grok-4-fast-|^grok-4-1-fast-|^grok-4\.20|^grok-code-fast"
)


@dataclass(frozen=True, slots=True)
class _Rejection:
    code: grpc.StatusCode
    details: str
    retry_after: float | None = None


class XaiServer:
    """The running gRPC server (``port`` is the bound port on 127.0.0.1)."""

    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self._server = server
        self.port = port

    async def stop(self) -> None:
        await self._server.stop(grace=None)


async def start(state: EmulatorState, host: str, port: int) -> XaiServer:
    """Serve xAI's Chat and Models services on ``host:port`` (0 = a free port)."""
    server = grpc.aio.server()
    chat = _ChatService(state)
    _register(chat_pb2_grpc.add_ChatServicer_to_server, chat, server)
    _register(models_pb2_grpc.add_ModelsServicer_to_server, _ModelsService(state), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
        await server.start()
    except BaseException:
        await server.stop(grace=None)
        raise
    return XaiServer(server, bound)


def _register(add: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server) -> None:
    """Register with the package's generated ``add_*_to_server``, letting handlers also
    return pre-encoded ``bytes`` (the generated serializer is used for messages)."""

    class _Capture:
        def add_generic_rpc_handlers(self, handlers: Any) -> None:
            pass

        def add_registered_method_handlers(self, name: str, handlers: dict[str, Any]) -> None:
            self.name, self.handlers = name, handlers

    capture = _Capture()
    add(servicer, capture)
    handlers = {
        method: handler._replace(response_serializer=_passthrough(handler.response_serializer))
        for method, handler in capture.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.name, handlers),))
    server.add_registered_method_handlers(capture.name, handlers)


def _passthrough(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def encode(message: Any) -> bytes:
        return message if type(message) is bytes else serialize(message)

    return encode


# -- requests ---------------------------------------------------------------------------


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            out[key.lower()] = value
    return out


def _bearer(metadata: dict[str, str]) -> str | None:
    value = metadata.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _mask(key: str) -> str:
    return f"{key[:2]}***{key[-2:]}" if len(key) >= 4 else "***"


def _conversation(request: Any) -> tuple[list[tuple[str, str]], str | None]:
    turns: list[tuple[str, str]] = []
    system: list[str] = []
    for message in request.messages:
        text = "".join(part.text for part in message.content)
        role = message.role
        if role in (chat_pb2.MessageRole.ROLE_SYSTEM, chat_pb2.MessageRole.ROLE_DEVELOPER):
            system.append(text)
        elif role == _ASSISTANT:
            turns.append(("assistant", text))
        elif role == _TOOL:
            turns.append(("tool", text))
        else:
            turns.append(("user", text))
    return turns, ("\n\n".join(system) if system else None)


def _offered(request: Any) -> Offered:
    """The function tools, tool choice and response schema of a (well-formed) request."""
    tools = tuple(
        (t.function.name, json.loads(t.function.parameters or "{}"))
        for t in request.tools
        if t.WhichOneof("tool") == "function"
    )
    choice = "auto"
    if request.HasField("tool_choice"):
        tc = request.tool_choice
        choice = tc.function_name if tc.function_name else _MODES.get(tc.mode, "auto")
    schema = None
    if request.HasField("response_format"):
        kind = request.response_format.format_type
        if kind == chat_pb2.FormatType.FORMAT_TYPE_JSON_SCHEMA:
            schema = json.loads(request.response_format.schema)
        elif kind == chat_pb2.FormatType.FORMAT_TYPE_JSON_OBJECT:
            schema = {"type": "object"}
    return Offered(tools=tools, tool_choice=choice, schema=schema)


def _bad_tools(request: Any) -> str | None:
    names = set()
    for number, t in enumerate(request.tools):
        if t.WhichOneof("tool") != "function":
            continue
        names.add(t.function.name)
        try:
            schema = json.loads(t.function.parameters or "{}")
        except ValueError:
            schema = None
        if not isinstance(schema, dict):
            return f"Invalid request: tools[{number}].function.parameters is not a JSON object."
    named = request.tool_choice.function_name if request.HasField("tool_choice") else ""
    if named and named not in names:
        return f"Invalid request: tool_choice names {named!r}, which is not among the tools."

    if request.HasField("response_format"):
        fmt = request.response_format
        if fmt.format_type == chat_pb2.FormatType.FORMAT_TYPE_JSON_SCHEMA:
            try:
                schema = json.loads(fmt.schema)
            except ValueError:
                schema = None
            if not isinstance(schema, dict):
                return "Invalid request: response_format.schema is not a JSON schema."
    return None


def _bad_content(request: Any) -> str | None:
    for number, message in enumerate(request.messages):
        for index, part in enumerate(message.content):
            if part.WhichOneof("content") != "image_url":
                continue
            url = part.image_url.image_url
            where = f"messages[{number}].content[{index}].image_url"
            if url.startswith(("http://", "https://")):
                continue
            match = _DATA_URL.match(url)
            if match is None:
                return (
                    f"Invalid request content: {where} must be an http(s) URL or a base64 "
                    "data URL of a PNG or JPEG image."
                )
            try:
                base64.b64decode(match.group(2), validate=True)
            except (binascii.Error, ValueError):
                return f"Invalid request content: {where} is not valid base64."
    return None


def _malformed(request: Any, model: str) -> str | None:
    """The real service's INVALID_ARGUMENT text for a request it cannot take, or None."""
    if not model:
        return "Invalid request: the model name must not be empty."
    if not request.messages:
        return "Invalid request: at least one message is required."
    if request.HasField("max_tokens") and request.max_tokens < 1:
        return f"Invalid request: max_tokens must be at least 1, got {request.max_tokens}."
    if request.HasField("temperature") and not 0 <= request.temperature <= 2:
        return f"Invalid request: temperature must be between 0 and 2, got {request.temperature}."
    effort = request.reasoning_effort if request.HasField("reasoning_effort") else None
    if effort is not None and _REJECTS_EFFORT.search(model):
        return _NO_EFFORT.format(model=model)
    return _bad_tools(request) or _bad_content(request)


def _fault_rejection(behaviour: Behaviour, model: str, prompt_tokens: int) -> _Rejection | None:
    fault = behaviour.before_stream_fault
    if fault is None:
        return None
    if fault == "rate_limited":
        return _Rejection(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            _RATE_LIMITED.format(team=_TEAM, model=model),
            retry_after=behaviour.retry_after,
        )
    if fault == "overloaded":
        return _Rejection(grpc.StatusCode.UNAVAILABLE, _UNAVAILABLE)
    if fault == "server_error":
        return _Rejection(grpc.StatusCode.INTERNAL, _INTERNAL)
    if fault == "invalid_key":
        return _Rejection(grpc.StatusCode.UNAUTHENTICATED, _NO_AUTH)
    if fault == "invalid_request":
        return _Rejection(grpc.StatusCode.INVALID_ARGUMENT, _INVALID_ARGUMENT)
    if fault == "context_too_long":
        count = _MAX_PROMPT_LENGTH + prompt_tokens
        return _Rejection(
            grpc.StatusCode.INVALID_ARGUMENT, _CONTEXT.format(limit=_MAX_PROMPT_LENGTH, count=count)
        )
    return _Rejection(grpc.StatusCode.NOT_FOUND, _NOT_FOUND.format(model=model, team=_TEAM))


def _trailers(rejection: _Rejection) -> tuple[tuple[str, str | bytes], ...]:
    if rejection.retry_after is None:
        return ()
    seconds = int(rejection.retry_after)
    delay = duration_pb2.Duration(
        seconds=seconds, nanos=round((rejection.retry_after - seconds) * 1e9)
    )
    status = status_pb2.Status(code=rejection.code.value[0], message=rejection.details)
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return (("grpc-status-details-bin", status.SerializeToString()),)


async def _abort(context: grpc.aio.ServicerContext, rejection: _Rejection) -> None:
    await context.abort(rejection.code, rejection.details, trailing_metadata=_trailers(rejection))


# -- chunks -----------------------------------------------------------------------------


class _Encoder:
    """Encodes one response's chunks: per-response fields once, then delta + usage."""

    def __init__(self, plan: Plan) -> None:
        now = time.time()
        created = timestamp_pb2.Timestamp(seconds=int(now), nanos=int((now % 1) * 1e9))
        self.id = str(uuid.uuid4())
        self.created = created
        self.model = plan.model
        self.prompt_tokens = plan.prompt_tokens
        self.completion = self.reasoning = 0  # running counts of the chunks encoded so far
        self._head = chat_pb2.GetChatCompletionChunk(id=self.id).SerializeToString()
        self._middle = chat_pb2.GetChatCompletionChunk(
            created=created, model=plan.model, system_fingerprint=_FINGERPRINT
        ).SerializeToString()

    def usage(self, completion: int, reasoning: int) -> usage_pb2.SamplingUsage:
        return usage_pb2.SamplingUsage(
            completion_tokens=completion,
            reasoning_tokens=reasoning,
            prompt_tokens=self.prompt_tokens,
            total_tokens=self.prompt_tokens + completion + reasoning,
            prompt_text_tokens=self.prompt_tokens,
        )

    def chunk(self, delta: Any, finish: int = 0) -> bytes:
        """A chunk with ``delta`` and the running usage so far."""
        output = chat_pb2.GetChatCompletionChunk(
            outputs=[chat_pb2.CompletionOutputChunk(delta=delta, finish_reason=finish)]
        ).SerializeToString()
        usage = chat_pb2.GetChatCompletionChunk(
            usage=self.usage(self.completion, self.reasoning)
        ).SerializeToString()
        data: bytes = self._head + output + self._middle + usage
        return data


def _deltas(plan: Plan, encoder: _Encoder, limit: int | None) -> Iterator[tuple[bytes, int]]:
    """The delta chunks, encoded as they are needed (reasoning first, then content, then
    the calls in one delta), each with the number of tokens it carries; the encoder's
    running counts follow them. ``limit``: content events before a fault (each argument
    token of a call is one): what it cuts is not sent."""
    size = plan.behaviour.chunk
    sent = 0
    for start in range(0, len(plan.reasoning), size):
        if limit is not None and sent >= limit:
            return
        pieces = plan.reasoning[start : start + size]
        encoder.reasoning += len(pieces)
        delta = chat_pb2.Delta(reasoning_content="".join(pieces), role=_ASSISTANT)
        sent += 1
        yield encoder.chunk(delta), len(pieces)
    for start in range(0, len(plan.text), size):
        if limit is not None and sent >= limit:
            return
        pieces = plan.text[start : start + size]
        encoder.completion += len(pieces)
        sent += 1
        yield encoder.chunk(chat_pb2.Delta(content="".join(pieces), role=_ASSISTANT)), len(pieces)
    whole: list[PlannedCall] = []
    for call in plan.tool_calls:
        if limit is not None and sent + len(call.pieces) > limit:
            break
        whole.append(call)
        sent += len(call.pieces)
    if whole:
        tokens = sum(len(call.pieces) for call in whole)
        encoder.completion += tokens
        delta = chat_pb2.Delta(role=_ASSISTANT, tool_calls=[_tool_call(c) for c in whole])
        yield encoder.chunk(delta), tokens


def call_id(call: PlannedCall) -> str:
    """xAI's id shape for a call: ``call_`` and 8 digits (``call_56494531``)."""
    return f"call_{int(call.key[:12], 16) % 10**8:08d}"


def _tool_call(call: PlannedCall) -> Any:
    arguments = "".join(call.pieces)
    return chat_pb2.ToolCall(
        id=call_id(call),
        type=_CLIENT_SIDE,
        status=_COMPLETED if arguments == call.arguments else _INCOMPLETE,
        function=chat_pb2.FunctionCall(name=call.name, arguments=arguments),
    )


# -- the services -----------------------------------------------------------------------


class _ChatService(chat_pb2_grpc.ChatServicer):  # type: ignore[misc]
    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    async def _admit(
        self, request: Any, context: grpc.aio.ServicerContext, *, stream: bool
    ) -> tuple[RecordedRequest, Plan]:
        """Record the request, check key, knobs, body and before-stream faults; plan it.

        Aborts the call (raises) when the request is refused.
        """
        metadata = _metadata(context)
        key = _bearer(metadata)
        key_ok = self._state.key_ok(key)
        try:
            record = self._state.begin(
                dialect="xai",
                endpoint=_STREAM_PATH if stream else _UNARY_PATH,
                model=request.model,
                body=json_format.MessageToDict(request, preserving_proto_field_name=True),
                api_key=key,
                stream=stream,
                header_knobs=metadata.get(KNOB_HEADER),
                headers={k: v for k, v in metadata.items() if k != "authorization"},
            )
        except ValueError as error:
            if not key_ok:
                await _abort(context, _auth_rejection(key))
            await _abort(context, _Rejection(grpc.StatusCode.INVALID_ARGUMENT, str(error)))
            raise  # unreachable: abort raises
        conversation, system = _conversation(request)
        rejection: _Rejection | None = None
        if not key_ok:
            rejection = _auth_rejection(key)
        elif (problem := _malformed(request, record.model)) is not None:
            rejection = _Rejection(grpc.StatusCode.INVALID_ARGUMENT, problem)
        plan = plan_reply(
            model=record.model,
            conversation=conversation,
            system=system,
            max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
            want_reasoning=_wants_reasoning(request),
            behaviour=record.behaviour,
            offered=_offered(request) if rejection is None else None,
        )
        plan = _stopped(plan, request.stop)
        if rejection is None:
            rejection = _fault_rejection(record.behaviour, record.model, plan.prompt_tokens)
        if rejection is not None:
            self._state.finish(record, disconnected=False)
            await _abort(context, rejection)
        return record, plan

    async def GetCompletionChunk(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        record, plan = await self._admit(request, context, stream=True)
        behaviour = record.behaviour
        fault = behaviour.mid_stream_fault
        encoder = _Encoder(plan)
        pacer = Pacer(behaviour)
        finished = False
        try:
            limit = behaviour.after if fault is not None else None
            for data, tokens in _deltas(plan, encoder, limit):
                await pacer.before_content(tokens)
                yield data
                record.events_sent += 1
            if fault is None:
                yield encoder.chunk(chat_pb2.Delta(role=_ASSISTANT), _FINISH[plan.finish])
                record.events_sent += 1
            elif fault == "stall":
                await asyncio.Event().wait()  # until the client cancels
            elif fault == "drop":
                finished = True
                self._state.finish(record, disconnected=False)
                await _abort(context, _Rejection(grpc.StatusCode.UNAVAILABLE, _DROPPED))
            elif fault == "error_event":
                finished = True
                self._state.finish(record, disconnected=False)
                await _abort(context, _Rejection(grpc.StatusCode.INTERNAL, _STREAM_REMOVED))
            # truncate: end the call OK without the finish chunk
            finished = True
            self._state.finish(record, disconnected=False)
        finally:
            if not finished:
                # Cancelled (asyncio.CancelledError) or closed by grpc: the client went away.
                self._state.finish(record, disconnected=True)

    async def GetCompletion(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        record, plan = await self._admit(request, context, stream=False)
        behaviour = record.behaviour
        fault = behaviour.mid_stream_fault
        encoder = _Encoder(plan)
        reasoning, text, finish = plan.reasoning, plan.text, _FINISH[plan.finish]
        calls = plan.tool_calls
        try:
            if plan.behaviour.ttft > 0:
                await asyncio.sleep(plan.behaviour.ttft)
            if fault == "stall":
                await asyncio.Event().wait()
            if fault == "drop":
                self._state.finish(record, disconnected=False)
                await _abort(context, _Rejection(grpc.StatusCode.UNAVAILABLE, _DROPPED))
            if fault == "error_event":
                self._state.finish(record, disconnected=False)
                await _abort(context, _Rejection(grpc.StatusCode.INTERNAL, _STREAM_REMOVED))
            if fault == "truncate":
                # A reply cut short without a finish reason (REASON_INVALID, the default).
                cut = behaviour.after * behaviour.chunk
                reasoning, text, finish = reasoning[:cut], text[: max(0, cut - len(reasoning))], 0
                calls = ()
        except asyncio.CancelledError:
            self._state.finish(record, disconnected=True)
            raise
        response = chat_pb2.GetChatCompletionResponse(
            id=encoder.id,
            outputs=[
                chat_pb2.CompletionOutput(
                    finish_reason=finish,
                    index=0,
                    message=chat_pb2.CompletionMessage(
                        content="".join(text),
                        reasoning_content="".join(reasoning),
                        role=_ASSISTANT,
                        tool_calls=[_tool_call(call) for call in calls],
                    ),
                )
            ],
            created=encoder.created,
            model=plan.model,
            system_fingerprint=_FINGERPRINT,
            usage=encoder.usage(
                len(text) + sum(len(call.pieces) for call in calls), len(reasoning)
            ),
        )
        record.events_sent += 1
        self._state.finish(record, disconnected=False)
        return response


def _stopped(plan: Plan, stops: Sequence[str]) -> Plan:
    """The reply cut before the first stop sequence (which is not sent), finish ``stop``."""
    return plan.stopped_at(stops)[0]


def _wants_reasoning(request: Any) -> bool:
    return bool(request.HasField("reasoning_effort")) and (
        request.reasoning_effort != chat_pb2.ReasoningEffort.EFFORT_NONE
    )


def _auth_rejection(key: str | None) -> _Rejection:
    if not key:
        return _Rejection(grpc.StatusCode.UNAUTHENTICATED, _NO_AUTH)
    return _Rejection(grpc.StatusCode.UNAUTHENTICATED, _BAD_KEY.format(masked=_mask(key)))


class _ModelsService(models_pb2_grpc.ModelsServicer):  # type: ignore[misc]
    """``client.models.list_language_models()`` / ``get_language_model(name)``."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    async def _check_key(self, context: grpc.aio.ServicerContext) -> None:
        key = _bearer(_metadata(context))
        if not self._state.key_ok(key):
            await _abort(context, _auth_rejection(key))

    async def ListLanguageModels(
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
    ) -> Any:
        await self._check_key(context)
        return models_pb2.ListLanguageModelsResponse(models=[_model(n) for n in _model_names()])

    async def GetLanguageModel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._check_key(context)
        if request.name not in _model_names():
            await _abort(
                context,
                _Rejection(
                    grpc.StatusCode.NOT_FOUND, _NOT_FOUND.format(model=request.name, team=_TEAM)
                ),
            )
        return _model(request.name)


def _model_names() -> Sequence[str]:
    from .. import catalog  # lazily: the catalog loads its data file

    return catalog.models("grok")


def _model(name: str) -> Any:
    text = models_pb2.Modality.Value("TEXT")
    return models_pb2.LanguageModel(
        name=name,
        aliases=[f"{name}-latest"],
        version="1.0.0",
        input_modalities=[text],
        output_modalities=[text],
        max_prompt_length=_MAX_PROMPT_LENGTH,
        system_fingerprint=_FINGERPRINT,
    )

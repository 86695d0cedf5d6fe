"""Tools a model may call: what a request offers, and the calls a reply makes.

A request offers :class:`Tool`\\ s (``tools=[...]``): a name, a description and
a JSON Schema for the arguments, given directly or derived from a typed Python
function or a pydantic model::

    @rxllm.tool
    def get_weather(city: str, units: Literal["c", "f"] = "c") -> str:
        \"\"\"The current weather in a city.\"\"\"

    stream = provider.stream("Weather in Oslo?", tools=[get_weather])

``tool_choice`` is ``"auto"`` (the vendor's default), ``"none"``, ``"required"``
or a tool's name. A reply streams each call as ``tool_call_delta`` events and
one ``tool_call`` event (:class:`~rxllm.events.ToolCallEvent`) when the call is
complete; :func:`rxllm.run_tools` runs the functions and sends their results
back until the model answers.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_type_hints

import pydantic
from pydantic_core import to_json

from .errors import ToolArgumentsError
from .events import DoneEvent, FinishReason, StreamEvent, ToolCallDeltaEvent, ToolCallEvent

__all__ = ["Tool", "ToolCall", "ToolChoice", "as_tool", "tool"]

ToolChoice: TypeAlias = Literal["auto", "none", "required"] | str
"""``"auto"``, ``"none"``, ``"required"``, or the name of the one tool to call."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool offered to the model.

    ``parameters`` is the JSON Schema of the arguments (an ``object``).
    ``function``, when set, is what :func:`rxllm.run_tools` calls with the
    arguments as keywords (sync or async); a tool without one is only offered,
    its calls left to the caller.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(_EMPTY_SCHEMA), hash=False)
    function: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    _validator: type[pydantic.BaseModel] | None = field(
        default=None, compare=False, repr=False, hash=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                "Tool.name must be 1-64 letters, digits, '_' or '-' starting with a letter or "
                f"'_' (what every vendor accepts), got {self.name!r}"
            )
        if not isinstance(self.description, str):
            raise ValueError("Tool.description must be a str")
        if not isinstance(self.parameters, Mapping) or self.parameters.get("type") != "object":
            raise ValueError(
                f"Tool {self.name!r}: parameters must be a JSON Schema of type 'object'"
            )

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool:
        """A tool from a typed function: its name, docstring and parameters' types
        (and ``Annotated[..., Field(description=...)]``, or a Google-style ``Args:``
        section, for each parameter's description)."""
        signature = inspect.signature(function)
        hints = get_type_hints(function, include_extras=True)
        doc = inspect.getdoc(function) or ""
        summary, arg_docs = _parse_docstring(doc)
        fields: dict[str, Any] = {}
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ValueError(
                    f"tool {function.__name__!r}: *args and **kwargs cannot be described "
                    "to a model; name each parameter"
                )
            annotation = hints.get(param.name, Any)
            default = ... if param.default is param.empty else param.default
            described = arg_docs.get(param.name)
            info = pydantic.Field(default, description=described) if described else default
            fields[param.name] = (annotation, info)
        tool_name = name or function.__name__
        model = pydantic.create_model(tool_name, **fields)
        return cls(
            name=tool_name,
            description=description if description is not None else summary,
            parameters=_clean_schema(model.model_json_schema()),
            function=function,
            _validator=model,
        )

    @classmethod
    def from_model(
        cls,
        model: type[pydantic.BaseModel],
        *,
        name: str | None = None,
        description: str | None = None,
        function: Callable[..., Any] | None = None,
    ) -> Tool:
        """A tool whose arguments are a pydantic model's fields (name and description
        from the class unless given)."""
        return cls(
            name=name or model.__name__,
            description=description
            if description is not None
            else (inspect.getdoc(model) or "").strip(),
            parameters=_clean_schema(model.model_json_schema()),
            function=function,
            _validator=model,
        )

    def parse(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments, validated against the derived model (as given when none)."""
        if self._validator is None:
            return dict(arguments)
        model = self._validator.model_validate(dict(arguments))
        return {name: getattr(model, name) for name in type(model).model_fields}

    async def call(self, arguments: Mapping[str, Any]) -> Any:
        """Run :attr:`function` with ``arguments`` (validated), awaiting it if async.

        A sync function runs in a worker thread so the event loop (and other streams)
        keep going while it works.
        """
        if self.function is None:
            raise ValueError(f"tool {self.name!r} has no function to call")
        kwargs = self.parse(arguments)
        if inspect.iscoroutinefunction(self.function):
            return await self.function(**kwargs)
        result = await asyncio.to_thread(self.function, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "description", "parameters"}``: JSON-ready (the function is not kept)."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Decorator: ``@rxllm.tool`` or ``@rxllm.tool(name=..., description=...)`` makes a
    :class:`Tool` of a typed function (see :meth:`Tool.from_function`)."""

    def make(fn: Callable[..., Any]) -> Tool:
        return Tool.from_function(fn, name=name, description=description)

    return make(function) if function is not None else make


def as_tool(value: object) -> Tool:
    """A :class:`Tool` from a tool, a function, a pydantic model class, or a dict
    ``{"name", "description", "parameters"}`` (OpenAI's ``{"type": "function",
    "function": {...}}`` too)."""
    if isinstance(value, Tool):
        return value
    if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
        return Tool.from_model(value)
    if isinstance(value, Mapping):
        spec = value.get("function", value) if value.get("type") == "function" else value
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ValueError(f"a tool dict needs a 'name', got keys {sorted(value)}")
        return Tool(
            name=spec["name"],
            description=spec.get("description") or "",
            parameters=spec.get("parameters") or spec.get("input_schema") or dict(_EMPTY_SCHEMA),
        )
    if callable(value):
        return Tool.from_function(value)
    raise ValueError(
        "a tool must be an rxllm.Tool, a typed function, a pydantic model class or a dict, "
        f"got {type(value).__name__}"
    )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call a reply made: kept in history (an assistant :class:`~rxllm.request.Message`'s
    ``tool_calls``) and on :class:`~rxllm.result.StreamResult`."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)
    server_side: bool = False
    vendor_data: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """What the vendor needs back with the call (Gemini's thought signature), JSON-ready."""

    @classmethod
    def of(cls, event: ToolCallEvent) -> ToolCall:
        return cls(
            event.id, event.name, dict(event.arguments), event.server_side, dict(event.vendor_data)
        )

    def arguments_json(self) -> str:
        """The arguments as compact JSON (what the JSON APIs send back)."""
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": self.arguments}
        if self.server_side:
            out["server_side"] = True
        if self.vendor_data:
            out["vendor_data"] = dict(self.vendor_data)
        return out


def result_text(value: Any) -> str:
    """What a tool's return value says to the model: a string as it is, anything else as
    JSON (pydantic models, dataclasses and the like included)."""
    if isinstance(value, str):
        return value
    return to_json(value, fallback=str).decode()


# -- from deltas to complete calls -------------------------------------------------------------


def complete_call(
    *,
    index: int,
    call_id: str | None,
    name: str | None,
    arguments: str,
    provider: str | None = None,
    model: str | None = None,
) -> ToolCallEvent:
    """The ``tool_call`` event for a call's whole argument text.

    Raises:
        ToolArgumentsError: the arguments are not a JSON object (naming the tool).
    """
    tool_name = name or "?"
    text = arguments.strip()
    try:
        parsed = json.loads(text) if text else {}
    except ValueError as error:
        raise ToolArgumentsError(
            f"the arguments of tool {tool_name!r} (call {call_id}) are not valid JSON: "
            f"{error}; received {arguments!r:.200}",
            tool_name=tool_name,
            call_id=call_id,
            arguments=arguments,
            provider=provider,
            model=model,
        ) from None
    if not isinstance(parsed, dict):
        raise ToolArgumentsError(
            f"the arguments of tool {tool_name!r} (call {call_id}) are JSON but not an "
            f"object: {arguments!r:.200}",
            tool_name=tool_name,
            call_id=call_id,
            arguments=arguments,
            provider=provider,
            model=model,
        )
    return ToolCallEvent(
        id=call_id or f"call_{index}", name=tool_name, arguments=parsed, index=index
    )


@dataclass(slots=True)
class _Pending:
    index: int
    id: str | None = None
    name: str | None = None
    parts: list[str] = field(default_factory=list)


async def with_complete_calls(
    events: AsyncIterator[StreamEvent], *, provider: str, model: str
) -> AsyncIterator[StreamEvent]:
    """``events`` plus one ``tool_call`` for each call whose ``tool_call_delta``\\ s it carries.

    A call is complete when a later call starts or the stream's ``done`` arrives; a
    provider that knows sooner sends the ``tool_call`` itself, and it is not repeated.
    A reply cut by ``max_tokens`` inside a call's arguments does not make that call:
    ``done.details["incomplete_tool_calls"]`` holds what arrived of it.
    """
    pending: dict[int, _Pending] = {}
    finished: set[int] = set()

    def complete(upto: int | None) -> list[ToolCallEvent]:
        ready = sorted(i for i in pending if upto is None or i < upto)
        out = []
        for i in ready:
            call = pending.pop(i)
            finished.add(i)
            out.append(
                complete_call(
                    index=i,
                    call_id=call.id,
                    name=call.name,
                    arguments="".join(call.parts),
                    provider=provider,
                    model=model,
                )
            )
        return out

    async for event in events:
        if isinstance(event, ToolCallDeltaEvent):
            if event.index not in pending and event.index not in finished:
                for done_call in complete(event.index):
                    yield done_call
                pending[event.index] = _Pending(event.index)
            call = pending.get(event.index)
            if call is not None:
                call.id = call.id or event.id
                call.name = call.name or event.name
                call.parts.append(event.arguments)
        elif isinstance(event, ToolCallEvent):
            pending.pop(event.index, None)
            finished.add(event.index)
        elif isinstance(event, DoneEvent) and pending:
            if event.finish_reason is FinishReason.LENGTH:
                cut = [
                    {"index": c.index, "id": c.id, "name": c.name, "arguments": "".join(c.parts)}
                    for c in sorted(pending.values(), key=lambda c: c.index)
                ]
                pending.clear()
                event = DoneEvent(
                    usage=event.usage,
                    finish_reason=event.finish_reason,
                    model=event.model,
                    provider=event.provider,
                    details={**event.details, "incomplete_tool_calls": cut},
                )
            else:
                for done_call in complete(None):
                    yield done_call
        yield event


# -- schemas -----------------------------------------------------------------------------------


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """pydantic's schema without the titles it adds (noise in a prompt; some vendors
    reject unknown keys)."""

    def clean(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                key: clean(value, key in ("properties", "$defs", "definitions"))
                for key, value in node.items()
                if in_properties or key != "title"
            }
        if isinstance(node, list):
            return [clean(item) for item in node]
        return node

    cleaned: dict[str, Any] = clean(schema)
    return cleaned


_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Example|Examples|Note|Notes):\s*$"
)


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(the text before the first section, each argument's description in ``Args:``)."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
            current = None
            continue
        if section is None:
            summary.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            entry = re.match(r"^\s{0,4}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if entry:
                current = entry.group(1)
                args[current] = entry.group(2).strip()
            elif current and line.strip():
                args[current] = f"{args[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), args

"""Structured output: a reply that is JSON fitting a schema, parsed while it streams.

``response_format=`` takes a pydantic model class or a JSON Schema dict. Each
provider maps it to its vendor's native mechanism (see the provider modules);
the reply's text is the JSON, streamed as ``token`` events as usual, and on top:

- ``partial_object`` events carry the value parsed so far whenever it changes
  (``jiter``'s partial mode: an unfinished string shows as far as it got);
- one ``object`` event before ``done`` carries the validated value: the model
  instance when a model class was given, else the parsed JSON (checked against
  the schema by the vendor, not by rxllm).

A reply that is not valid JSON, or does not validate, ends the stream with
:class:`~rxllm.errors.StructuredOutputError` carrying the raw text, after the
tokens (nothing streamed is lost). A reply cut by ``max_tokens`` is that error too.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jiter
import pydantic

from .errors import StructuredOutputError
from .events import DoneEvent, ObjectEvent, PartialObjectEvent, StreamEvent, TokenEvent
from .tools import _clean_schema

__all__ = ["ResponseFormat"]

_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """What ``response_format=`` asked for, in the one shape providers map."""

    schema: Mapping[str, Any] = field(hash=False)
    """The JSON Schema of the reply."""
    name: str = "response"
    """A name for the schema (OpenAI and xAI require one)."""
    model: type[pydantic.BaseModel] | None = field(default=None, compare=False)
    """The pydantic model to validate into, when one was given."""

    @classmethod
    def of(cls, value: object) -> ResponseFormat:
        """From a pydantic model class, a JSON Schema dict or a ``ResponseFormat``."""
        if isinstance(value, ResponseFormat):
            return value
        if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
            return cls(_clean_schema(value.model_json_schema()), _name(value.__name__), value)
        if isinstance(value, Mapping):
            schema = dict(value)
            # OpenAI's own shape, {"type": "json_schema", "json_schema": {"name", "schema"}}.
            if schema.get("type") == "json_schema" and isinstance(schema.get("json_schema"), dict):
                inner = schema["json_schema"]
                return cls(dict(inner.get("schema") or {}), _name(inner.get("name") or "response"))
            if "type" not in schema and "properties" not in schema and "$ref" not in schema:
                raise ValueError(
                    "response_format dict must be a JSON Schema (with 'type' or 'properties')"
                )
            return cls(schema, _name(str(schema.get("title") or "response")))
        raise ValueError(
            "response_format must be a pydantic model class or a JSON Schema dict, got "
            f"{type(value).__name__}"
        )

    def validate(self, text: str, *, provider: str | None, model: str | None) -> Any:
        """The reply's value, validated; :class:`StructuredOutputError` when it is not."""
        try:
            if self.model is not None:
                return self.model.model_validate_json(text)
            return json.loads(text)
        except pydantic.ValidationError as error:
            problems = error.errors(include_url=False, include_context=False)
            raise StructuredOutputError(
                f"the reply does not fit {self.name}: {error.error_count()} validation "
                f"error(s), first: {problems[0]['msg']} at {_loc(problems[0]['loc'])}",
                raw_text=text,
                errors=[dict(p) for p in problems],
                provider=provider,
                model=model,
            ) from None
        except ValueError as error:
            raise StructuredOutputError(
                f"the reply is not valid JSON ({error}): {text[:120]!r}",
                raw_text=text,
                provider=provider,
                model=model,
            ) from None


def _name(text: str) -> str:
    return _NAME.sub("_", text)[:64] or "response"


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "the top level"


async def with_objects(
    events: AsyncIterator[StreamEvent], response_format: ResponseFormat, *, prefill: str = ""
) -> AsyncIterator[StreamEvent]:
    """``events`` plus ``partial_object`` events as the JSON grows and the ``object`` event
    before ``done`` (see the module docstring). ``prefill`` is the reply's start already
    delivered (a resumed reply): the object is parsed from it plus ``events``' text."""
    text: list[str] = [prefill] if prefill else []
    last: Any = None
    async for event in events:
        if isinstance(event, DoneEvent):
            whole = "".join(text)
            value = response_format.validate(whole, provider=event.provider, model=event.model)
            yield ObjectEvent(value)
        yield event
        if isinstance(event, TokenEvent) and event.text:
            text.append(event.text)
            try:
                partial = jiter.from_json(
                    "".join(text).encode(), partial_mode="trailing-strings", cache_mode="keys"
                )
            except ValueError:
                continue  # nothing parseable yet (leading whitespace, a code fence...)
            if partial != last:
                last = partial
                yield PartialObjectEvent(partial)

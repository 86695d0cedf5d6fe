"""Message content beyond text: images and documents, as parts of a message.

A user message's ``content`` is a string, or a sequence of parts::

    Message("user", ["What is in this picture?", rxllm.image("cat.png")])

- :func:`image`: bytes, a file path or an ``http(s)://`` URL; the media type is
  detected from the bytes (PNG, JPEG, GIF, WebP) or the name, or given.
- :func:`document`: a PDF, as bytes, a path or a URL.

Each provider maps parts to its vendor's shape and refuses, before any request,
a part its vendor cannot take (:class:`rxllm.errors.UnsupportedContentError`,
naming both): see each provider module's docstring for what it accepts.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

__all__ = [
    "DocumentPart",
    "ImagePart",
    "Part",
    "TextPart",
    "document",
    "image",
    "part_from_dict",
]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
"""The image media types every vendor rxllm maps takes."""

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text, as one part of a message."""

    text: str
    type: Literal["text"] = field(default="text", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"TextPart.text must be a str, got {type(self.text).__name__}")


@dataclass(frozen=True, slots=True)
class _Media:
    data: bytes | None = field(default=None, repr=False)
    """The content itself, or ``None`` for a part given by ``url``."""
    url: str | None = None
    media_type: str | None = None

    def __post_init__(self) -> None:
        kind = type(self).__name__
        if (self.data is None) == (self.url is None):
            raise ValueError(f"{kind} needs exactly one of data= or url=")
        if self.data is not None:
            if not isinstance(self.data, bytes) or not self.data:
                raise ValueError(f"{kind}.data must be non-empty bytes")
            if self.media_type is None:
                object.__setattr__(self, "media_type", sniff_media_type(self.data))
        if self.url is not None:
            scheme = urllib.parse.urlsplit(self.url).scheme
            if scheme not in ("http", "https"):
                raise ValueError(f"{kind}.url must be an http(s) URL, got {self.url!r:.80}")
            if self.media_type is None:
                object.__setattr__(self, "media_type", mimetypes.guess_type(self.url)[0])

    @property
    def base64(self) -> str:
        """The data, base64-encoded (what the JSON APIs send)."""
        if self.data is None:
            raise ValueError(f"{type(self).__name__} is a URL, it has no data")
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        """``data:<media type>;base64,...`` (OpenAI's and xAI's inline form)."""
        return f"data:{self.media_type};base64,{self.base64}"

    def describe(self) -> str:
        """Short and secret-free, for error messages: ``image (image/png, 2,048 bytes)``."""
        where = f"url {self.url}" if self.url else f"{len(self.data or b''):,} bytes"
        return f"{self.type} ({self.media_type or 'unknown type'}, {where})"  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ImagePart(_Media):
    """An image: bytes (``data``) or a URL the vendor fetches itself."""

    type: Literal["image"] = field(default="image", init=False)

    def __post_init__(self) -> None:
        _Media.__post_init__(self)
        if self.data is not None and self.media_type not in IMAGE_TYPES:
            raise ValueError(
                f"ImagePart: unknown image type {self.media_type!r}; give media_type= one "
                f"of {', '.join(IMAGE_TYPES)}"
            )


@dataclass(frozen=True, slots=True)
class DocumentPart(_Media):
    """A document (a PDF): bytes or a URL."""

    type: Literal["document"] = field(default="document", init=False)

    def __post_init__(self) -> None:
        if self.data is not None and self.media_type is None:
            object.__setattr__(self, "media_type", sniff_media_type(self.data))
        if self.url is not None and self.media_type is None:
            object.__setattr__(self, "media_type", "application/pdf")
        _Media.__post_init__(self)
        if self.media_type != "application/pdf":
            raise ValueError(
                f"DocumentPart: only PDF documents are supported, got {self.media_type!r}"
            )


Part: TypeAlias = TextPart | ImagePart | DocumentPart


def sniff_media_type(data: bytes) -> str | None:
    """The media type the first bytes say, for the types rxllm sends; ``None`` otherwise."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _load(source: bytes | str | os.PathLike[str]) -> tuple[bytes | None, str | None, str | None]:
    """(data, url, name) for bytes, a path or a URL."""
    if isinstance(source, bytes):
        return source, None, None
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return None, source, None
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return path.read_bytes(), None, path.name
        except OSError as error:
            raise ValueError(f"cannot read {str(path)!r}: {error.strerror}") from None
    raise ValueError(f"expected bytes, a path or a URL, got {type(source).__name__}")


def image(source: bytes | str | os.PathLike[str], *, media_type: str | None = None) -> ImagePart:
    """An image part from bytes, a file path or an ``http(s)://`` URL.

    Example:
        >>> Message("user", ["Describe it", rxllm.image("chart.png")])
    """
    data, url, name = _load(source)
    if media_type is None and data is not None:
        media_type = sniff_media_type(data) or (mimetypes.guess_type(name)[0] if name else None)
    return ImagePart(data=data, url=url, media_type=media_type)


def document(
    source: bytes | str | os.PathLike[str], *, media_type: str | None = None
) -> DocumentPart:
    """A PDF document part from bytes, a file path or an ``http(s)://`` URL."""
    data, url, _ = _load(source)
    return DocumentPart(data=data, url=url, media_type=media_type)


def part_to_dict(part: Part) -> dict[str, Any]:
    """A JSON-ready dict (bytes as base64), read back by :func:`part_from_dict`."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    out: dict[str, Any] = {"type": part.type, "media_type": part.media_type}
    if part.url is not None:
        out["url"] = part.url
    else:
        out["data"] = part.base64
    return out


def part_from_dict(value: dict[str, Any]) -> Part:
    """The part a dict describes: ``{"type": "text", "text": ...}``, or ``"image"`` /
    ``"document"`` with ``data`` (base64) or ``url``, and ``media_type``."""
    kind = value.get("type")
    if kind == "text":
        return TextPart(value["text"])
    if kind in ("image", "document"):
        data = value.get("data")
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else data
        cls = ImagePart if kind == "image" else DocumentPart
        return cls(data=raw, url=value.get("url"), media_type=value.get("media_type"))
    raise ValueError(f"unknown content part type {kind!r} (text, image, document)")


def as_part(value: object, where: str) -> Part:
    """A part from a part, a string or a part dict."""
    if isinstance(value, TextPart | ImagePart | DocumentPart):
        return value
    if isinstance(value, str):
        return TextPart(value)
    if isinstance(value, dict):
        return part_from_dict(value)
    raise ValueError(
        f"{where} must be a str, a content part (rxllm.image(...), rxllm.document(...)) or "
        f"a part dict, got {type(value).__name__}"
    )

"""Server-sent event framing in bytes, one network read at a time.

The HTTP providers (OpenAI, Anthropic, Gemini's raw path) read their streams through
:class:`SSEFramer` instead of the SDKs' private SSE decoders. Why a framer of rxllm's
own: the SDK decoders split the body into lines, decode each line to ``str`` and parse
fields one line at a time; on a stream of small token events that was the largest
single cost of rxllm's hot path (~45 % of client CPU on OpenAI, see ``bench/``). Here a
whole read is split on the blank line that ends an event, in bytes, and the common
frames (``data: ...`` alone, or ``event: ...`` then ``data: ...``) are cut with two
slices; the event name can be looked at before any JSON is parsed.

The rules of the event-stream format that matter on the wire (WHATWG HTML, "Parsing an
event stream"), all checked by ``tests/test_sse_framing.py`` against the SDK's decoder
on every real capture split at every byte position:

- lines end with CRLF, LF or CR, also when a CRLF is split across two reads;
- an event ends at a blank line; one that EOF cuts before its blank line is dropped;
- several ``data:`` lines are joined with ``\\n``; one space after the colon is dropped;
- comments (lines starting with ``:``), ``id:``, ``retry:`` and unknown fields are
  skipped (rxllm uses neither ids nor reconnection times);
- a frame may be split anywhere across reads;
- a UTF-8 byte order mark at the very start of the stream is dropped.

A frame with neither ``event:`` nor ``data:`` (only comments, say) is no event. Data
stays ``bytes``: ``json.loads`` and ``msgspec`` take bytes, and an event a provider
skips is never decoded at all.
"""

from __future__ import annotations

from typing import Final, TypeAlias

__all__ = ["Event", "SSEFramer"]

Event: TypeAlias = tuple[bytes | None, bytes]
"""One event: its ``event:`` name (``None`` when the frame had none) and its data."""

_BOM: Final = b"\xef\xbb\xbf"


class SSEFramer:
    """Turns the reads of an event stream into events, one read at a time.

    ``feed(read)`` returns the events that read completed (often several, sometimes
    none); ``finish()`` says the stream ended (an unfinished event is dropped, as the
    format says).

    Example:
        >>> framer = SSEFramer()
        >>> framer.feed(b"event: ping\\ndata: {}\\n\\ndata: [DO")
        [(b'ping', b'{}')]
        >>> framer.feed(b"NE]\\n\\n")
        [(None, b'[DONE]')]
    """

    __slots__ = ("_buffer", "_cr", "_started")

    def __init__(self) -> None:
        self._buffer = b""  # the unfinished frame, line ends already made LF
        self._cr = False  # the last read ended with CR: an LF starting the next belongs to it
        self._started = False  # past the place a byte order mark may be

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by ``chunk`` (the next bytes of the body)."""
        buffer = self._joined(chunk)
        return [] if buffer is None else self._frames(buffer)

    def _frames(self, buffer: bytes) -> list[Event]:
        """The events of the complete frames of ``buffer``; the rest is kept."""
        frames = buffer.split(b"\n\n")
        self._buffer = frames.pop()
        events: list[Event] = []
        append = events.append
        for frame in frames:
            # The two shapes the vendors send, cut without a loop over lines.
            if frame[:6] == b"data: ":
                if b"\n" not in frame:
                    append((None, frame[6:]))
                    continue
            elif frame[:7] == b"event: ":
                newline = frame.find(b"\n")
                if (
                    newline > 0
                    and frame[newline + 1 : newline + 7] == b"data: "
                    and frame.find(b"\n", newline + 1) < 0
                ):
                    append((frame[7:newline] or None, frame[newline + 7 :]))
                    continue
            event = _parse(frame)
            if event is not None:
                append(event)
        return events

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """The data of the events ``chunk`` completed, without their names.

        For streams whose event names say nothing (OpenAI, Gemini): the same events as
        :meth:`feed`, and quicker when the read holds only one-line ``data: ...`` frames
        (what those vendors send): then it is one split of the read, with no copy per
        frame. Any other read goes through :meth:`feed`'s rules.
        """
        buffer = self._joined(chunk)
        if buffer is None:
            return []
        if buffer[:6] == b"data: ":
            end = buffer.rfind(b"\n\n")
            datas = buffer[6:end].split(b"\n\ndata: ")
            # Those cuts and the last frame's end hold two line ends each: if that is all
            # the line ends there are, every frame was one "data: " line.
            if buffer.count(b"\n", 0, end + 2) == 2 * len(datas):
                self._buffer = buffer[end + 2 :]
                return datas
        return [data for _, data in self._frames(buffer)]

    def _joined(self, chunk: bytes) -> bytes | None:
        """The unfinished frame and ``chunk``, line ends made LF and a leading byte order
        mark dropped; ``None`` (and kept) while that completes no frame."""
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            if len(buffer) < 3 and _BOM.startswith(buffer):
                self._buffer = buffer  # maybe a byte order mark, cut by the read
                return None
            self._started = True
            if buffer[:3] == _BOM:
                buffer = buffer[3:]
        if b"\n\n" not in buffer:
            self._buffer = buffer
            return None
        return buffer

    def finish(self) -> list[Event]:
        """The stream ended: what is left is an unfinished event, which is dropped."""
        self._buffer = b""
        self._cr = False
        return []


def _parse(frame: bytes) -> Event | None:
    """Any other frame, line by line (the format's general rules)."""
    name: bytes | None = None
    data: list[bytes] | None = None
    for line in frame.split(b"\n"):
        if not line or line[:1] == b":":
            continue  # a blank line left by an odd count of line ends; a comment
        field, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            if data is None:
                data = [value]
            else:
                data.append(value)
        elif field == b"event":
            name = value or None  # an empty name is no name
        # id, retry and unknown fields: nothing rxllm uses.
    if data is None:
        # An event: line alone still makes an event (the SDKs dispatch it, data empty).
        return None if name is None else (name, b"")
    return name, data[0] if len(data) == 1 else b"\n".join(data)

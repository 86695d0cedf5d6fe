"""rxllm's own SSE framing reads every real capture exactly as the SDK's decoder does,
however the network splits the body.

The reference is the openai SDK's public-module ``SSEDecoder`` (the same decoder the
anthropic SDK carries): only the test uses it. Every capture in ``tests/fixtures`` is fed
split at every byte position, once with LF line ends as captured and once with CRLF (as
Gemini sends them), so a CRLF also falls across two reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai._streaming import SSEDecoder

from rxllm.providers._sse import SSEFramer

FIXTURES = Path(__file__).parent / "fixtures"


def _gemini_wire(path: Path) -> bytes:
    """A Gemini capture (one JSON event a line) as it travels: ``data: ...\\r\\n\\r\\n``."""
    out = b""
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == "event":
            body = json.dumps(record["data"], ensure_ascii=False).encode()
            out += b"data: " + body + b"\r\n\r\n"
    return out


def _captures() -> list[tuple[str, bytes]]:
    out = [(p.name, p.read_bytes()) for p in sorted(FIXTURES.glob("*/*.sse"))]
    out += [(p.name, _gemini_wire(p)) for p in sorted(FIXTURES.glob("gemini/*.jsonl"))]
    return out


CAPTURES = _captures()


def _sdk(body: bytes) -> list[tuple[str | None, str]]:
    return [(e.event, e.data) for e in SSEDecoder().iter_bytes(iter([body]))]


def _framed(*reads: bytes) -> list[tuple[str | None, str]]:
    framer = SSEFramer()
    events = [e for read in reads for e in framer.feed(read)]
    events += framer.finish()
    return [(None if n is None else n.decode(), d.decode()) for n, d in events]


def _framed_data(*reads: bytes) -> list[str]:
    framer = SSEFramer()
    return [d.decode() for read in reads for d in framer.feed_data(read)]


def _sdk_data(body: bytes) -> list[str]:
    return [data for _, data in _sdk(body)]


def test_every_capture_is_found() -> None:
    names = {name for name, _ in CAPTURES}
    assert len(CAPTURES) >= 20
    assert {"openai_text.sse", "anthropic_tool_use.sse", "gemini_thinking.jsonl"} <= names


@pytest.mark.parametrize("crlf", [False, True], ids=["as-captured", "crlf"])
@pytest.mark.parametrize(("name", "body"), CAPTURES, ids=[n for n, _ in CAPTURES])
def test_every_split_point_gives_the_sdk_decoders_events(
    name: str, body: bytes, crlf: bool
) -> None:
    if crlf:
        body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    expected = _sdk(body)
    assert expected, name
    assert _framed(body) == expected
    data = [d for _, d in expected]
    assert _framed_data(body) == data
    for cut in range(1, len(body)):
        got = _framed(body[:cut], body[cut:])
        if got != expected:  # one assert with the split point in it, not 10,000
            pytest.fail(f"{name} split at byte {cut}: {got[:3]}... != {expected[:3]}...")
        got_data = _framed_data(body[:cut], body[cut:])
        if got_data != data:
            pytest.fail(
                f"{name} split at byte {cut}, data only: {got_data[:3]}... != {data[:3]}..."
            )


def test_one_byte_at_a_time() -> None:
    for name, body in CAPTURES:
        assert _framed(*(body[i : i + 1] for i in range(len(body)))) == _sdk(body), name


@pytest.mark.parametrize(
    "body",
    [
        b"data: a\r\rdata: b\r\r",  # CR alone ends a line
        b"data: a\ndata: b\n\n",  # multi-line data joined with LF
        b": keep-alive\n\ndata: x\n\n",  # a comment frame is no event
        b"event: ping\n\n",  # an event name alone
        b"event:\ndata: x\n\n",  # an empty name is none
        b"id: 7\nretry: 10\nevent: e\ndata:no-space\n\n",
        b"\n\n\ndata: x\n\n\n\ndata: y\n\n",  # extra blank lines
        b"data\n\n",  # a field with no colon
        b"data: cut at EOF",  # unfinished at the end: dropped
        b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\n",
    ],
)
def test_format_rules_match_the_sdk(body: bytes) -> None:
    for cut in range(len(body) + 1):
        assert _framed(body[:cut], body[cut:]) == _sdk(body), cut


def test_a_byte_order_mark_at_the_start_is_dropped_even_split() -> None:
    body = b"\xef\xbb\xbfdata: {}\n\n"
    for cut in range(len(body) + 1):
        assert _framed(body[:cut], body[cut:]) == [(None, "{}")]


ODD_BODIES = [
    b"data: a\n\n\n\ndata: b\n\n",  # a blank line more between two events
    b"data: a\ndata: b\n\ndata: c\n\n",  # two data lines: one event "a\nb"
    b": keep-alive\n\ndata: a\n\n",  # a comment frame
    b"data: a\n\n: keep-alive\n\ndata: b\n\n",
    b"event: ping\n\ndata: a\n\n",  # an event with no data line
    b"data:a\n\ndata:  b\n\n",  # no space, two spaces
    b"data: says data: x\n\ndata: y\n\n",  # "data: " inside a payload
    b"id: 1\ndata: a\n\ndata: b\n\n",
    b"data: a\n\ndata: b\n",  # the last event not finished
    b"\xef\xbb\xbfdata: a\n\ndata: b\n\n",  # a byte order mark
    b"data: a\r\n\r\ndata: b\r\n\r\n",
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("body", ODD_BODIES)
def test_data_only_reading_follows_the_rules_on_odd_streams(body: bytes) -> None:
    expected = [data for _, data in _framed(body)]
    if not body.startswith(b"\xef\xbb\xbf"):  # the SDK's decoder keeps a byte order mark
        assert expected == _sdk_data(body)
    assert _framed_data(body) == expected
    for cut in range(1, len(body)):
        assert _framed_data(body[:cut], body[cut:]) == expected, cut

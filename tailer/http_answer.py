"""Reading one HTTP/1.1 answer off a socket: the status, three headers, the body — strictly.

:mod:`tailer.http_exchange` sends PutRecords / PutRecordBatch on sockets of its
own because botocore's session + urllib3 + http.client cost ~1 ms of CPU per call
(docs/performance.md), most of it generic work this one POST does not need:
``email.parser`` for the headers, per-call URL and proxy resolution, retry and
timeout objects. This module reads what the sinks use — the status, the body and
``x-amzn-ErrorType`` — plus what framing needs (``Content-Length``,
``Transfer-Encoding``, ``Connection``), with http.client's limits (65,536-byte
lines, 100 headers) and a cap on the body.

Stricter than botocore where botocore is lenient, never laxer: a body shorter than
its ``Content-Length`` is an error here (botocore passes ``enforce_content_length=
False`` and would hand the short body on); interim 1xx answers are skipped (RFC
9110; http.client skips only 100). Every malformed answer raises
:class:`BrokenAnswer`, which the exchange maps to botocore's
``ConnectionClosedError`` — what urllib3's ``ProtocolError`` became — so the
classification in tailer/kinesis_errors.py is unchanged: retryable, the call is
sent again (a duplicate at worst, never a loss).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_ANSWER_BYTES", "Answer", "BrokenAnswer", "read_answer"]

MAX_LINE = 65536  # http.client's _MAXLINE
MAX_HEADERS = 100  # http.client's _MAXHEADERS
# A 500-entry PutRecords answer is ~55 KB; an error document a few hundred bytes. Far above both, far
# below what would hurt the tailer's memory (a proxy streaming garbage at us).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
_HEX = b"0123456789abcdefABCDEF"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content: bytes
    error_type: str  # the x-amzn-ErrorType header ("" when absent)


class BrokenAnswer(Exception):
    """The bytes read are not a complete HTTP/1.1 answer (closed early, malformed, or too large)."""


def _line(reader) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BrokenAnswer("an answer line longer than 65,536 bytes")
    if not line.endswith(b"\n"):
        raise BrokenAnswer("the connection closed in the middle of the answer's head" if line
                           else "the connection closed before an answer")
    return line


def _head(reader) -> tuple[int, bytes, dict[bytes, bytes]]:
    """(status, version, headers) of the final answer; interim 1xx answers skipped."""
    while True:
        version, _, rest = _line(reader).partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit() or rest[3:4] not in (
                b" ", b"\r", b"\n", b""):
            raise BrokenAnswer(f"not an HTTP/1.x status line: {(version + b' ' + rest)[:80]!r}")
        status = int(code)
        headers: dict[bytes, bytes] = {}
        for _ in range(MAX_HEADERS + 1):
            line = _line(reader)
            if line in (b"\r\n", b"\n"):
                break
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise BrokenAnswer(f"not a header line: {line[:80]!r}")
            name = name.lower()
            value = value.strip()
            if name in headers and name == b"content-length" and headers[name] != value:
                raise BrokenAnswer("two different Content-Length headers")
            headers[name] = headers[name] + b", " + value if name in headers and name != b"content-length" \
                else value
        else:
            raise BrokenAnswer("more than 100 headers")
        if status == 101:
            raise BrokenAnswer("101 Switching Protocols to a POST")
        if status >= 200:
            return status, version, headers


def _exactly(reader, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise BrokenAnswer(f"the connection closed {n - len(data)} bytes before the end of the answer")
    return data


def _chunked(reader) -> bytes:
    parts, total = [], 0
    while True:
        size_text = _line(reader).split(b";", 1)[0].strip()
        if not size_text or size_text.strip(_HEX) or len(size_text) > 16:
            raise BrokenAnswer(f"not a chunk size: {size_text[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(MAX_HEADERS + 1):  # trailers, up to the blank line
                if _line(reader) in (b"\r\n", b"\n"):
                    return b"".join(parts)
            raise BrokenAnswer("more than 100 trailer lines")
        total += size
        if total > MAX_ANSWER_BYTES:
            raise BrokenAnswer(f"an answer over {MAX_ANSWER_BYTES:,} bytes")
        parts.append(_exactly(reader, size))
        if _line(reader) not in (b"\r\n", b"\n"):
            raise BrokenAnswer("a chunk longer than its size")


def _until_close(reader) -> bytes:
    data = reader.read(MAX_ANSWER_BYTES + 1)
    if len(data) > MAX_ANSWER_BYTES:
        raise BrokenAnswer(f"an answer over {MAX_ANSWER_BYTES:,} bytes")
    return data


def read_answer(reader) -> tuple[Answer, bool]:
    """(the answer, whether the connection may carry another call) from a buffered binary reader."""
    status, version, headers = _head(reader)
    connection = headers.get(b"connection", b"").lower()
    reusable = b"close" not in connection and (version != b"HTTP/1.0" or b"keep-alive" in connection)
    encoding = headers.get(b"transfer-encoding", b"").lower()
    length = headers.get(b"content-length")
    if status in (204, 304):
        content = b""
    elif encoding:
        if encoding.rsplit(b",", 1)[-1].strip() != b"chunked":
            content, reusable = _until_close(reader), False  # RFC 9112 6.3: read until the close
        else:
            content = _chunked(reader)
    elif length is not None:
        if not length.isdigit():
            raise BrokenAnswer(f"not a Content-Length: {length[:40]!r}")
        if int(length) > MAX_ANSWER_BYTES:
            raise BrokenAnswer(f"an answer of {int(length):,} bytes, over {MAX_ANSWER_BYTES:,}")
        content = _exactly(reader, int(length))
    else:
        content, reusable = _until_close(reader), False
    error_type = headers.get(b"x-amzn-errortype", b"").decode("latin-1")
    return Answer(status, content, error_type), reusable

"""How a request's body is framed, decided from the raw header block before waitress reads it.

RFC 9112 leaves no room for guessing, and a proxy in front may guess
differently from waitress (request smuggling). waitress drops
``Transfer-Encoding`` from what it parses when its value lists no coding, and
ignores it outside HTTP/1.1; so the guard reads the raw header block first and
refuses, closing the connection after the answer:

- obsolete line folding (§5.2);
- ``Transfer-Encoding`` together with ``Content-Length`` (§6.1);
- ``Transfer-Encoding`` in any version but HTTP/1.1 (§6.1: "MUST treat the
  message as if the framing is faulty ... and close the connection");
- ``Transfer-Encoding`` that is not exactly one ``chunked`` coding: empty, a
  bare comma, ``chunked`` twice, the header repeated (a coding waitress does not
  know at all stays waitress's 501);
- HTTP versions other than 1.0 and 1.1 (505): waitress applied neither one's
  rules to them.
"""

from __future__ import annotations

import re

import waitress.receiver
import waitress.rfc7230
from waitress.parser import ParsingError
from waitress.utilities import BadRequest, Error

__all__ = ["VersionNotSupported", "check_raw_framing", "framing_error", "strict_chunk_lines", "transfer_encodings"]

_TE_LINE = re.compile(rb"\r\n[Tt][Rr][Aa][Nn][Ss][Ff][Ee][Rr]-[Ee][Nn][Cc][Oo][Dd][Ii][Nn][Gg]:([^\r\n]*)")
_OWS = b" \t"
SUPPORTED_VERSIONS = ("1.0", "1.1")


def strict_chunk_lines() -> None:
    """Make waitress's chunk-size line checks end at the end of the line, not before a final LF.

    waitress matches a chunk's size and extensions with ``^...$``, and ``$`` also
    matches before a trailing ``\\n``: ``7\\n\\r\\n`` and ``7;x\\n\\r\\n`` were taken as
    chunk sizes. RFC 9112 (section 7.1) allows no bare LF there, and a proxy may
    read such a line differently (found by the hostile review). ``\\Z`` is the
    real end. Idempotent; called when the receiver builds its server.
    """
    waitress.receiver.ONLY_HEXDIG_RE = re.compile(("^" + waitress.rfc7230.HEXDIG + r"+\Z").encode("latin-1"))
    waitress.receiver.CHUNK_EXT_RE = re.compile(("^" + waitress.rfc7230.CHUNK_EXT + r"\Z").encode("latin-1"))


class VersionNotSupported(Error):
    code = 505
    reason = "HTTP Version Not Supported"


def transfer_encodings(header_plus: bytes) -> list[bytes] | None:
    """Every ``Transfer-Encoding`` value in the raw header block, in order; None if there is none."""
    values = [m.group(1).strip(_OWS) for m in _TE_LINE.finditer(header_plus)]
    return values or None


def check_raw_framing(header_plus: bytes) -> None:
    """What must be refused before waitress parses the block (it would join folded lines): ParsingError, a 400."""
    if b"\r\n " in header_plus or b"\r\n\t" in header_plus:
        raise ParsingError("obsolete line folding is not accepted (RFC 9112, section 5.2)")


def framing_error(te_values: list[bytes] | None, version: str, headers: dict[str, str]) -> Error | None:
    """What needs waitress's parse too (the version, Content-Length): the error to answer, or None."""
    if version not in SUPPORTED_VERSIONS:
        return VersionNotSupported(f"HTTP version {version or 'missing'} is not supported: use HTTP/1.1")
    if te_values is None:
        return None
    if version != "1.1":
        return BadRequest("Transfer-Encoding is only accepted in HTTP/1.1 requests (RFC 9112, section 6.1)")
    if "CONTENT_LENGTH" in headers:
        return BadRequest("Content-Length with Transfer-Encoding is not accepted (RFC 9112, section 6.1)")
    if len(te_values) != 1 or te_values[0].lower() != b"chunked":
        return BadRequest("Transfer-Encoding must be exactly one 'chunked' coding")
    return None

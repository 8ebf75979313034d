"""Errors a client can cause, each knowing its HTTP status and JSON body.

    ApiError                    base: status + code + message (+ details)
    ├── BadRequest        400   bad JSON, not objects, too deep, empty
    │   └── Invalid       400   schema validation failed (errors by index)
    ├── Unauthorized      401   missing or wrong API key
    ├── OriginRefused     403   Origin not in --cors-origin
    ├── TooLarge          413   body, inflated body, event or event count too large
    ├── Unsupported       415   content type, charset or encoding we do not take
    └── Unavailable       503   spool full or unwritable (+ Retry-After)

Nothing a client sends may become a 500: anything else is a bug, answered as a
JSON 500 without a stack trace and logged.

An error body may repeat what the client sent (an origin, a content type, a
schema message naming its fields), but never more than a few dozen characters
of it: :func:`quote_client_value` clips a value where a message embeds it, and
:meth:`ApiError.body` clips every string it holds as a last line of defence, so
a client cannot make the receiver echo (or a log store keep) kilobytes.
"""

from __future__ import annotations

import math
import re

import orjson

__all__ = [
    "MAX_CLIENT_VALUE_CHARS",
    "MAX_MESSAGE_CHARS",
    "ApiError",
    "BadRequest",
    "Invalid",
    "OriginRefused",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
    "clip",
    "clip_quoted",
    "quote_client_value",
]

MAX_CLIENT_VALUE_CHARS = 64  # of a client's value quoted in a message
MAX_MESSAGE_CHARS = 300  # of any string in an error body
_ELLIPSIS = "…"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def quote_client_value(value: object) -> str:
    """A client-sent value as it may appear in a message: quoted, at most 64 characters of it."""
    return repr(clip(str(value), MAX_CLIENT_VALUE_CHARS))


# A Python string literal as repr() writes one: '...' or "...", with backslash escapes.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"', re.DOTALL)


def clip_quoted(text: str) -> str:
    """``text`` with every quoted literal in it (what a library's message quotes from input) cut to 64 characters."""

    def clipped(match: re.Match[str]) -> str:
        literal = match.group(0)
        return literal[0] + clip(literal[1:-1], MAX_CLIENT_VALUE_CHARS) + literal[-1]

    return _QUOTED.sub(clipped, text)


def _clip_strings(value: object) -> object:
    if isinstance(value, str):
        return clip(value, MAX_MESSAGE_CHARS)
    if isinstance(value, list):
        return [_clip_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _clip_strings(v) for k, v in value.items()}
    return value


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> bytes:
        return orjson.dumps(_clip_strings({"error": self.code, "message": self.message, **self.details}))

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Invalid(BadRequest):
    code = "invalid"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="spoolship"'}


class OriginRefused(ApiError):
    status = 403
    code = "origin_refused"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class Unsupported(ApiError):
    status = 415
    code = "unsupported_media_type"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_seconds: float, **details: object) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds, **details)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_seconds)))}

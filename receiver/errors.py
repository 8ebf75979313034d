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
"""

from __future__ import annotations

import math

import orjson

__all__ = [
    "ApiError",
    "BadRequest",
    "Invalid",
    "OriginRefused",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
]


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> bytes:
        return orjson.dumps({"error": self.code, "message": self.message, **self.details})

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

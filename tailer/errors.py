"""The tailer's error hierarchy, and the one place Kinesis failures are translated.

    ShipError
    ├── Retryable            retried with exponential backoff and full jitter, forever
    │   ├── Throttled        ProvisionedThroughputExceeded, LimitExceeded, KMS throttling, HTTP 429
    │   └── Unavailable      connection refused/reset, timeouts, HTTP 5xx, InternalFailure
    ├── Permanent            cannot succeed as things stand: logged loudly, retried slowly
    │   ├── StreamNotFound   ResourceNotFoundException (wrong name, or deleted)
    │   ├── AccessDenied     AccessDenied, bad or expired credentials, KMS access
    │   └── RequestRejected  ValidationException / InvalidArgument: this request itself is bad
    └── Aborted              the drain timeout expired while a batch was still being retried

No error drops data: a batch stays unacknowledged (and its lines stay behind
the checkpoint) until Kinesis accepts it, except RequestRejected, which is
narrowed down to the single record at fault and dead-lettered.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "Aborted",
    "Permanent",
    "RequestRejected",
    "Retryable",
    "ShipError",
    "StreamNotFound",
    "Throttled",
    "Unavailable",
    "map_kinesis_error",
]


class ShipError(Exception):
    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class Retryable(ShipError):
    pass


class Throttled(Retryable):
    pass


class Unavailable(Retryable):
    pass


class Permanent(ShipError):
    pass


class StreamNotFound(Permanent):
    pass


class AccessDenied(Permanent):
    pass


class RequestRejected(Permanent):
    pass


class Aborted(ShipError):
    pass


_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "KMSThrottlingException",
    "RequestLimitExceeded",
}
_NOT_FOUND = {"ResourceNotFoundException"}
_DENIED = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "KMSOptInRequired",
}
_REJECTED = {"ValidationException", "InvalidArgumentException", "SerializationException"}


def map_kinesis_error(status: int, code: str, message: str) -> ShipError:
    """Turn an HTTP status and a Kinesis error code into the matching ShipError."""
    code = code.rsplit("#", 1)[-1]  # "com.amazonaws.kinesis.v20131202#ResourceNotFoundException"
    text = f"{code or 'HTTP ' + str(status)}: {message}".strip()
    if code in _THROTTLED or status == 429:
        return Throttled(text, code=code)
    if code in _NOT_FOUND:
        return StreamNotFound(text, code=code)
    if code in _DENIED or status in (401, 403):
        return AccessDenied(text, code=code)
    if code in _REJECTED or (400 <= status < 500 and status != 408):
        return RequestRejected(text, code=code)
    return Unavailable(text, code=code or f"HTTP{status}")

"""The one place Firehose answers become :mod:`tailer.errors` (exceptions: :mod:`tailer.kinesis_errors`).

Firehose speaks the same AWS JSON protocol as Kinesis (``__type`` error
documents, Coral validation messages), with codes of its own. Two tables, each
tested whole (tests/unit/test_firehose_errors.py):

- :func:`classify_answer` — an HTTP status and body that is not a
  PutRecordBatch success. 5xx is always retryable; Firehose says "slow down" with
  ``ServiceUnavailableException`` (throughput limits), so that is a throttle.
  3xx and 4xx are believed only as far as the body is an AWS error document. A
  record is at fault only when Firehose names it for that call
  (``records.<n>.member.data``, 1-based, in a 400 ``InvalidArgumentException`` or
  ``ValidationException``); anything else is the call's fault and never a dead letter.
- :func:`is_record_rejection` — a per-record ``ErrorCode`` inside a 200 answer.
  Firehose documents only ``ServiceUnavailableException`` and ``InternalFailure``
  there, both retried; any other code is not believed: retried too, never a dead letter.

Exceptions raised while getting credentials, signing or sending are the same
for both services: :func:`tailer.kinesis_errors.translate_exception`.
"""

from __future__ import annotations

from .errors import (
    AccessDenied,
    CallRefused,
    RequestInvalid,
    RequestRejected,
    ShipError,
    StreamNotFound,
    Throttled,
    Unavailable,
)
from .kinesis_errors import DENIED_CODES, classify_validation

__all__ = [
    "FIREHOSE_DENIED_CODES",
    "FIREHOSE_INVALID_CALL_CODES",
    "FIREHOSE_NOT_FOUND_CODES",
    "FIREHOSE_THROTTLED_CODES",
    "FIREHOSE_UNAVAILABLE_CODES",
    "FIREHOSE_VALIDATION_CODES",
    "classify_answer",
    "is_record_rejection",
]

# ServiceUnavailableException: "Back off and retry ... throughput limits for the delivery stream may have
# been exceeded" (the PutRecordBatch reference). It is Firehose's throttle.
FIREHOSE_THROTTLED_CODES = frozenset({
    "ServiceUnavailableException", "ThrottlingException", "Throttling", "LimitExceededException",
    "TooManyRequestsException", "RequestLimitExceeded", "KMSThrottlingException", "SlowDown",
})
# ResourceInUseException: the delivery stream is CREATING or UPDATING; it will take records again.
FIREHOSE_UNAVAILABLE_CODES = frozenset({
    "InternalFailure", "InternalFailureException", "InternalServerError", "ServiceUnavailable",
    "ResourceInUseException", "RequestTimeout", "RequestTimeoutException", "ConcurrentModificationException",
})
FIREHOSE_NOT_FOUND_CODES = frozenset({"ResourceNotFoundException"})
# InvalidKMSResourceException: KMS refused (AccessDenied, Disabled, InvalidState, NotFound) for this stream's key.
FIREHOSE_DENIED_CODES = DENIED_CODES | frozenset({"InvalidKMSResourceException"})
# May name records (then only those are at fault); otherwise the call is split.
FIREHOSE_VALIDATION_CODES = frozenset({"InvalidArgumentException", "ValidationException", "ValidationError",
                                       "SerializationException"})
# InvalidSourceException: the stream takes only CloudWatch Logs (decompression on): no split can help.
FIREHOSE_INVALID_CALL_CODES = frozenset({
    "InvalidSourceException", "InvalidAction", "MissingAction", "UnknownOperationException",
    "MalformedQueryString", "InvalidQueryParameter", "MissingParameter", "InvalidParameterValue",
    "InvalidParameterCombination",
})


def classify_answer(status: int, code: str, message: str, *, record_count: int,
                    from_firehose: bool = True) -> ShipError:
    """The ShipError for a PutRecordBatch answer other than a 200 success."""
    label = code or f"HTTP {status}"
    text = f"{label}: {' '.join(message.split())[:300]}" if message else label
    if 500 <= status <= 599:
        return (Throttled if code in FIREHOSE_THROTTLED_CODES else Unavailable)(text, code=code or f"HTTP{status}")
    if status == 429:
        return Throttled(text, code=code or "HTTP429")
    if status == 408:
        return Unavailable(text, code=code or "HTTP408")
    if 400 <= status <= 499 and code:
        known = _classify_code(status, code, message, text, record_count, from_firehose)
        if known is not None:
            return known
    if status == 413:
        return RequestRejected(f"{text} (the call is too large for something between us and Firehose)",
                               code=code or "HTTP413")
    if 300 <= status <= 499:
        return CallRefused(f"{text} (not an answer Firehose gives: is --endpoint-url right, or is a proxy "
                           "in the way?)", code=code or f"HTTP{status}")
    return Unavailable(f"unexpected HTTP status: {text}", code=code or f"HTTP{status}")


def _classify_code(status: int, code: str, message: str, text: str, record_count: int,
                   from_firehose: bool) -> ShipError | None:
    if code in FIREHOSE_THROTTLED_CODES:
        return Throttled(text, code=code)
    if code in FIREHOSE_UNAVAILABLE_CODES:
        return Unavailable(text, code=code)
    if code in FIREHOSE_NOT_FOUND_CODES:
        return StreamNotFound(text, code=code)
    if code in FIREHOSE_DENIED_CODES:
        return AccessDenied(text, code=code)
    if code in FIREHOSE_INVALID_CALL_CODES:
        return RequestInvalid(text, code=code)
    if code in FIREHOSE_VALIDATION_CODES:
        return classify_validation(status, code, message, text, record_count, from_firehose)
    return None


def is_record_rejection(code: str) -> bool:
    """Whether a per-record ErrorCode inside a 200 answer means "this record is invalid": never.

    Firehose documents only ``ServiceUnavailableException`` and ``InternalFailure`` there, both
    retryable; any other code is not an answer Firehose gives and cannot be believed. The record is
    sent again with backoff; only a validation error of the call naming it dead-letters a record.
    """
    return False

"""The one place Kinesis answers and client exceptions become :mod:`tailer.errors`.

Three tables, each tested whole (tests/unit/test_kinesis_errors.py):

- :func:`classify_answer` — an HTTP status and body that is not a PutRecords
  success. 5xx is always retryable; 3xx and 4xx are believed only as far as the
  body is a Kinesis error document. A record is at fault only when Kinesis says
  so *for that record*: a ``ValidationException`` whose message names
  ``records.<n>.member…`` (1-based, as AWS's Coral framework, kinesalite and moto
  all write it), in a well-formed "N validation errors detected:" message whose
  N matches the paths found (so a partition key that contains such text cannot
  name other records). Anything else is the call's fault and never a dead letter.
- :func:`is_record_rejection` — a per-record ``ErrorCode`` inside a 200 answer: never
  the record's fault (AWS documents only retryable codes there), so always sent again.
- :func:`translate_exception` — whatever botocore, urllib3, the credential
  providers or the OS raise while signing and sending.
"""

from __future__ import annotations

import re

import orjson
import urllib3.exceptions
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    InvalidConfigError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    UnknownCredentialError,
)

from .errors import (
    AccessDenied,
    CallRefused,
    CredentialsUnavailable,
    RecordsRejected,
    RequestInvalid,
    RequestRejected,
    ShipError,
    StreamNotFound,
    Throttled,
    Unavailable,
    unexpected,
)

__all__ = [
    "DENIED_CODES",
    "MAX_SEQUENCE_DIGITS",
    "INVALID_CALL_CODES",
    "NOT_FOUND_CODES",
    "THROTTLED_CODES",
    "UNAVAILABLE_CODES",
    "VALIDATION_CODES",
    "bare_code",
    "classify_answer",
    "classify_client_error",
    "classify_validation",
    "RECORD_RETRY_CODES",
    "is_record_rejection",
    "is_sequence_number",
    "parse_error_body",
    "translate_exception",
]

THROTTLED_CODES = frozenset({
    "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
    "Throttling", "KMSThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "SlowDown",
})
UNAVAILABLE_CODES = frozenset({
    "InternalFailure", "InternalFailureException", "InternalServerError", "ServiceUnavailable",
    "ServiceUnavailableException", "ResourceInUseException", "RequestTimeout", "RequestTimeoutException",
})
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException"})
DENIED_CODES = frozenset({
    "AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidSignatureException",
    "ExpiredTokenException", "ExpiredToken", "IncompleteSignature", "IncompleteSignatureException",
    "MissingAuthenticationToken", "MissingAuthenticationTokenException", "InvalidClientTokenId",
    "NotAuthorized", "OptInRequired", "RequestExpired", "SignatureDoesNotMatch", "InvalidAccessKeyId",
    "AuthFailure", "KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException",
    "KMSNotFoundException", "KMSOptInRequired",
})
# May name records (then only those are at fault); otherwise the call is split.
VALIDATION_CODES = frozenset({"ValidationException", "ValidationError", "InvalidArgumentException",
                              "SerializationException"})
INVALID_CALL_CODES = frozenset({
    "InvalidAction", "MissingAction", "UnknownOperationException", "MalformedQueryString",
    "InvalidQueryParameter", "MissingParameter", "InvalidParameterValue", "InvalidParameterCombination",
})
# Configuration problems of the credential chain: nothing to wait for.
_CREDENTIALS_CONFIG = (NoCredentialsError, PartialCredentialsError, UnknownCredentialError, ProfileNotFound,
                       InvalidConfigError)

_VALIDATION_HEADER = re.compile(r"(\d+) validation errors? detected: ")
_VALIDATION_PATH = re.compile(r" at '([A-Za-z0-9.]+)' failed to satisfy constraint")
_RECORD_PATH = re.compile(r"records\.(\d+)\.member(?:\.[A-Za-z]+)?")
_MESSAGE_CHARS = 300


def _short(text: str) -> str:
    return " ".join(text.split())[:_MESSAGE_CHARS]


def _describe(exc: BaseException) -> str:
    """``str(exc)``, which some exceptions cannot do (their ``__str__`` raises)."""
    try:
        return _short(str(exc))
    except Exception:  # an error message must never be what stops the retry
        return f"<{type(exc).__name__} that cannot describe itself>"


def parse_error_body(body: bytes, error_type_header: str = "") -> tuple[str, str, bool]:
    """(code, message, is_kinesis_document) of an error answer, whatever its shape."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        code = doc.get("__type") or doc.get("code") or doc.get("Code") or ""
        message = doc.get("message") or doc.get("Message") or ""
        if isinstance(code, str) and isinstance(message, str) and code:
            return _bare_code(code), message, True
    code = _bare_code(error_type_header) if error_type_header else ""
    return code, _short(body[:4 * _MESSAGE_CHARS].decode("utf-8", "replace")), False


def bare_code(code: str) -> str:
    """The code alone, without a namespace or URL around it."""
    return _bare_code(code)


def _bare_code(code: str) -> str:
    # "com.amazonaws.kinesis.v20131202#ResourceNotFoundException", "Code:http://internal.amazon.com/…"
    return code.rsplit("#", 1)[-1].split(":", 1)[0].strip()


def classify_answer(status: int, code: str, message: str, *, record_count: int,
                    from_kinesis: bool = True) -> ShipError:
    """The ShipError for a PutRecords (or control-plane) answer other than a 200 success."""
    label = code or f"HTTP {status}"
    text = f"{label}: {_short(message)}" if message else label
    if 500 <= status <= 599:
        return (Throttled if code in THROTTLED_CODES else Unavailable)(text, code=code or f"HTTP{status}")
    if status == 429:
        return Throttled(text, code=code or "HTTP429")
    if status == 408:
        return Unavailable(text, code=code or "HTTP408")
    if 400 <= status <= 499 and code:
        known = _classify_code(status, code, message, text, record_count, from_kinesis)
        if known is not None:
            return known
    if status == 413:
        return RequestRejected(f"{text} (the call is too large for something between us and Kinesis)",
                               code=code or "HTTP413")
    if 300 <= status <= 499:
        return CallRefused(f"{text} (not an answer Kinesis gives: is --endpoint-url right, or is a proxy "
                           "in the way?)", code=code or f"HTTP{status}")
    return Unavailable(f"unexpected HTTP status: {text}", code=code or f"HTTP{status}")


def _classify_code(status: int, code: str, message: str, text: str, record_count: int,
                   from_kinesis: bool) -> ShipError | None:
    if code in THROTTLED_CODES:
        return Throttled(text, code=code)
    if code in UNAVAILABLE_CODES:
        return Unavailable(text, code=code)
    if code in NOT_FOUND_CODES:
        return StreamNotFound(text, code=code)
    if code in DENIED_CODES:
        return AccessDenied(text, code=code)
    if code in INVALID_CALL_CODES:
        return RequestInvalid(text, code=code)
    if code in VALIDATION_CODES:
        return classify_validation(status, code, message, text, record_count, from_kinesis)
    return None


def classify_validation(status: int, code: str, message: str, text: str, record_count: int,
                        from_kinesis: bool) -> ShipError:
    """A validation answer (of Kinesis, or of any AWS JSON service written by the same framework):
    ``RecordsRejected`` only for a 400 from the service naming ``records.<n>.member…`` of this call."""
    paths = _validation_paths(message)
    if not paths:
        return RequestRejected(text, code=code)
    records = [_RECORD_PATH.fullmatch(path) for path in paths]
    if all(records):
        indexes = [int(match.group(1)) - 1 for match in records]
        if status == 400 and from_kinesis and all(0 <= i < record_count for i in indexes):
            return RecordsRejected(text, indexes, code=code)
        return RequestRejected(text, code=code)
    if any(path != "records" and match is None for path, match in zip(paths, records, strict=True)):
        return RequestInvalid(text, code=code)
    return RequestRejected(text, code=code)


def _validation_paths(message: str) -> list[str] | None:
    header = _VALIDATION_HEADER.match(message)
    if header is None:
        return None
    paths = _VALIDATION_PATH.findall(message)
    return paths if len(paths) == int(header.group(1)) else None


# The per-record ErrorCodes AWS documents for PutRecords: none of them is the record's fault.
RECORD_RETRY_CODES = frozenset({
    "ProvisionedThroughputExceededException", "InternalFailure", "KMSDisabledException",
    "KMSInvalidStateException", "KMSAccessDeniedException", "KMSNotFoundException", "KMSOptInRequired",
    "KMSThrottlingException",
})
MAX_SEQUENCE_DIGITS = 128  # the longest SequenceNumber believed (tailer/kinesis.py and kinesis_answer.py too)
_SEQUENCE_NUMBER = re.compile(rf"[0-9]{{1,{MAX_SEQUENCE_DIGITS}}}")


def is_record_rejection(code: str) -> bool:
    """Whether a per-record ErrorCode inside a 200 answer means "this record is invalid": never.

    AWS documents only :data:`RECORD_RETRY_CODES` there (throughput, internal failure, the stream's
    KMS key), none the record's fault; a code outside that set is not an answer Kinesis gives (a
    proxy, a fake, a bug), so it cannot be believed either. The record is sent again with backoff;
    a record is dead-lettered only when a validation error of the call names it.
    """
    return False


def is_sequence_number(value: object) -> bool:
    """A SequenceNumber as Kinesis writes it: a non-empty string of decimal digits."""
    return isinstance(value, str) and _SEQUENCE_NUMBER.fullmatch(value) is not None


def classify_client_error(exc: ClientError, *, record_count: int = 0) -> ShipError:
    response = exc.response or {}
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 400
    return classify_answer(int(status), _bare_code(str(error.get("Code") or "")), str(error.get("Message") or ""),
                           record_count=record_count)


def translate_exception(exc: BaseException, *, credentials: bool = False) -> ShipError:
    """Any exception raised while getting credentials (``credentials=True``), signing or sending."""
    if isinstance(exc, ShipError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, _CREDENTIALS_CONFIG):
        error: ShipError = AccessDenied(f"AWS credentials are not configured: {name}: {_describe(exc)}", code=name)
    elif credentials:
        code = (exc.response.get("Error") or {}).get("Code", name) if isinstance(exc, ClientError) else name
        error = CredentialsUnavailable(f"AWS credentials unavailable: {name}: {_describe(exc)}", code=code)
    elif isinstance(exc, ClientError):
        error = classify_client_error(exc)
    elif isinstance(exc, BotoCoreError | urllib3.exceptions.HTTPError | OSError):
        error = Unavailable(f"{name}: {_describe(exc)}", code=name)
    else:
        return unexpected(exc)
    error.__cause__ = exc
    return error

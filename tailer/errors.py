"""The tailer's error hierarchy: what a failed sink call means for the lines in it.

    ShipError
    ├── Retryable                retried with exponential backoff and full jitter, forever
    │   ├── Throttled            the service asks us to slow down (HTTP 429, throughput exceeded)
    │   ├── Unavailable          network, timeouts, 5xx, unreadable answers, a bug in a sink
    │   └── CredentialsUnavailable  the credential chain failed for now (STS, IMDS, SSO refresh)
    ├── Permanent                cannot succeed as configured: logged loudly, retried every
    │   │                        ``--permanent-retry`` (30 s), nothing dropped
    │   ├── StreamNotFound       the destination does not exist (wrong name, or deleted)
    │   ├── AccessDenied         denied, bad or missing credentials, KMS key unusable
    │   ├── CallRefused          a 3xx or 4xx that does not come from the service, or that it does
    │   │                        not explain (a proxy, load balancer, VPC endpoint, wrong URL)
    │   ├── RequestInvalid       the service names a part of the call that is not a record
    │   │                        (an invalid stream name): splitting the call cannot help
    │   └── RequestRejected      the service refuses the call without naming a record (too big,
    │                            too many records): the call is split; one record alone failing
    │                            the same way is the call's fault, not the record's
    ├── RecordsRejected          the service named these records as invalid: only they are
    │                            dead-lettered, the others are sent again
    └── Aborted                  the drain timeout expired while a batch was still being retried

Only :class:`RecordsRejected` (and a per-record rejection inside a successful
answer, see :class:`tailer.sink.PutResult`) ever dead-letters a line. Every
other error leaves the batch unacknowledged — its lines stay behind the
checkpoint — until the service accepts it. Sinks translate every exception of
their client into one of these in one place (``tailer.kinesis_errors`` for
Kinesis); :func:`unexpected` is the delivery's guard for a sink that breaks
that contract.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AccessDenied",
    "Aborted",
    "CallRefused",
    "CredentialsUnavailable",
    "Permanent",
    "RecordsRejected",
    "RequestInvalid",
    "RequestRejected",
    "Retryable",
    "ShipError",
    "StreamNotFound",
    "Throttled",
    "Unavailable",
    "unexpected",
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


class CredentialsUnavailable(Retryable):
    pass


class Permanent(ShipError):
    pass


class StreamNotFound(Permanent):
    pass


class AccessDenied(Permanent):
    pass


class CallRefused(Permanent):
    pass


class RequestInvalid(Permanent):
    pass


class RequestRejected(Permanent):
    pass


class RecordsRejected(ShipError):
    """``indexes`` (into the records of the call) are the records the service named as invalid."""

    def __init__(self, message: str, indexes: Sequence[int], *, code: str = "") -> None:
        super().__init__(message, code=code)
        self.indexes = sorted(set(indexes))


class Aborted(ShipError):
    pass


def unexpected(exc: BaseException) -> ShipError:
    """A sink let a foreign exception through (a bug): treat it as a retryable failure."""
    try:
        text = str(exc)
    except Exception:  # its __str__ is broken too
        text = "(no description)"
    error = Unavailable(f"unexpected {type(exc).__name__} from the sink: {text}", code="Unexpected")
    error.__cause__ = exc
    return error

"""The whole error table: every status 300–599 × every body shape × every client exception.

Invariants (issue 11): nothing is dead-lettered unless Kinesis named that record; no failure sends the
same records again without backing off first. The table is checked as a pure function, through the real
KinesisSink's parsing, and through Delivery's policy.
"""

from __future__ import annotations

import inspect
import json
import socket
import ssl
import string
import threading

import boto3
import botocore.exceptions as boto_exceptions
import pytest
import urllib3.exceptions as urllib3_exceptions

from tailer.delivery import Backoff, Delivery
from tailer.errors import (
    AccessDenied,
    CallRefused,
    CredentialsUnavailable,
    Permanent,
    RecordsRejected,
    RequestInvalid,
    RequestRejected,
    Retryable,
    ShipError,
    StreamNotFound,
    Throttled,
    Unavailable,
)
from tailer.kinesis import KinesisSink
from tailer.kinesis_errors import (
    DENIED_CODES,
    INVALID_CALL_CODES,
    NOT_FOUND_CODES,
    THROTTLED_CODES,
    UNAVAILABLE_CODES,
    VALIDATION_CODES,
    classify_answer,
    is_record_rejection,
    parse_error_body,
    translate_exception,
)
from tailer.metrics import TailerMetrics
from tailer.packing import Batch
from tailer.sink import PutResult

RECORDS = 5  # records in the call each answer refers to
KINESIS_CODES = sorted(THROTTLED_CODES | UNAVAILABLE_CODES | NOT_FOUND_CODES | DENIED_CODES | VALIDATION_CODES
                       | INVALID_CALL_CODES | {"SomethingNewException", "InternalServerError"})
NAMING = {  # validation messages as AWS, kinesalite and moto write them
    "records.3.member.data": "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1048577 "
                             "cap=1048577]' at 'records.3.member.data' failed to satisfy constraint: Member must "
                             "have length less than or equal to 1048576",
    "moto-style": "1 validation error detected: Value at 'records.2.member.data' failed to satisfy constraint: "
                  "Member must have length less than or equal to 1048576",
    "two records": "2 validation errors detected: Value 'x' at 'records.1.member.partitionKey' failed to satisfy "
                   "constraint: Member must have length less than or equal to 256; Value 'y' at "
                   "'records.5.member.partitionKey' failed to satisfy constraint: Member must have length less "
                   "than or equal to 256",
    "streamName": "1 validation error detected: Value 'my events' at 'streamName' failed to satisfy constraint: "
                  "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    "records": "1 validation error detected: Value '[...]' at 'records' failed to satisfy constraint: Member "
               "must have length less than or equal to 500",
    "out of range": "1 validation error detected: Value 'x' at 'records.9.member.data' failed to satisfy "
                    "constraint: Member must have length less than or equal to 1048576",
    "forged by a key": "1 validation error detected: Value 'a' at 'records.2.member.data' failed to satisfy "
                       "constraint: x' at 'records.1.member.partitionKey' failed to satisfy constraint: Member "
                       "must have length less than or equal to 256",
    "no count": "Value 'x' at 'records.1.member.data' failed to satisfy constraint: too long",
    "size": "Records size exceeds 5 MB limit",
}
NAMED_INDEXES = {"records.3.member.data": [2], "moto-style": [1], "two records": [0, 4]}


def bodies() -> list[tuple[str, bytes]]:
    """Every body shape: each code as Kinesis JSON (plain and namespaced), naming messages, and garbage."""
    out = []
    for code in KINESIS_CODES:
        out.append((f"json:{code}", json.dumps({"__type": code, "message": "m"}).encode()))
        out.append((f"ns:{code}", json.dumps({"__type": f"com.amazonaws.kinesis.v20131202#{code}",
                                               "Message": "m"}).encode()))
    for code in ("ValidationException", "InvalidArgumentException"):
        for name, message in NAMING.items():
            out.append((f"{code}:{name}", json.dumps({"__type": code, "message": message}).encode()))
    named = json.dumps({"__type": "ValidationException", "message": NAMING["records.3.member.data"]})
    out += [
        ("html", b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"),
        ("html naming a record", b"<html>at 'records.1.member.data' failed to satisfy constraint</html>"),
        ("empty", b""),
        ("truncated json", named.encode()[:37]),
        ("truncated naming json", named.encode()[:-3]),
        ("json list", b'[{"__type":"ValidationException"}]'),
        ("json without code", b'{"message":"records.1.member.data"}'),
        ("json string", b'"ValidationException"'),
        ("binary", bytes(range(256))),
        ("plain text", b"upstream connect error or disconnect/reset before headers"),
    ]
    return out


BODIES = bodies()
STATUSES = range(300, 600)


def classify(status: int, body: bytes) -> ShipError:
    code, message, from_kinesis = parse_error_body(body)
    return classify_answer(status, code, message, record_count=RECORDS, from_kinesis=from_kinesis)


def test_every_status_and_body_is_classified_and_only_kinesis_naming_a_record_dead_letters_it():
    leaves = (Throttled, Unavailable, StreamNotFound, AccessDenied, CallRefused, RequestInvalid,
              RequestRejected, RecordsRejected)
    outcomes: dict[str, int] = {}
    for status in STATUSES:
        for shape, body in BODIES:
            error = classify(status, body)
            assert type(error) in leaves, (status, shape, error)
            outcomes[type(error).__name__] = outcomes.get(type(error).__name__, 0) + 1
            if isinstance(error, RecordsRejected):
                name = shape.split(":", 1)[-1]
                assert status == 400 and name in NAMED_INDEXES, (status, shape)
                assert error.indexes == NAMED_INDEXES[name]
            if status >= 500:
                assert isinstance(error, Retryable), (status, shape, error)
            if status < 400:
                assert isinstance(error, CallRefused), (status, shape, error)
    assert set(outcomes) == {cls.__name__ for cls in leaves}, outcomes
    print(f"{len(STATUSES) * len(BODIES)} answers classified: {outcomes}")


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, {"__type": "ProvisionedThroughputExceededException"}, Throttled),
    (400, {"__type": "LimitExceededException"}, Throttled),
    (400, {"__type": "KMSThrottlingException"}, Throttled),
    (429, b"", Throttled),
    (400, {"__type": "ResourceNotFoundException"}, StreamNotFound),
    (400, {"__type": "AccessDeniedException"}, AccessDenied),
    (400, {"__type": "KMSDisabledException"}, AccessDenied),
    (403, {"__type": "MissingAuthenticationTokenException"}, AccessDenied),
    (400, {"__type": "IncompleteSignatureException"}, AccessDenied),
    (400, {"__type": "UnrecognizedClientException"}, AccessDenied),
    (400, {"__type": "ValidationException", "message": NAMING["streamName"]}, RequestInvalid),
    (400, {"__type": "ValidationException", "message": NAMING["records"]}, RequestRejected),
    (400, {"__type": "InvalidArgumentException", "message": NAMING["size"]}, RequestRejected),
    (400, {"__type": "ValidationException", "message": NAMING["records.3.member.data"]}, RecordsRejected),
    (400, {"__type": "ValidationException", "message": NAMING["forged by a key"]}, RequestRejected),
    (400, {"__type": "UnknownOperationException"}, RequestInvalid),
    (400, {"__type": "SomethingNewException"}, CallRefused),
    (400, b"<html>Bad Request</html>", CallRefused),
    (404, b"<html>Not Found</html>", CallRefused),
    (405, b"", CallRefused),
    (413, b"<html>Request Entity Too Large</html>", RequestRejected),
    (301, b"", CallRefused),
    (408, b"", Unavailable),
    (500, {"__type": "InternalFailure"}, Unavailable),
    (500, {"__type": "ValidationException", "message": NAMING["records.3.member.data"]}, Unavailable),
    (502, b"<html>Bad Gateway</html>", Unavailable),
    (503, {"__type": "ServiceUnavailable"}, Unavailable),
    (503, {"__type": "ThrottlingException"}, Throttled),
    (200, b"", Unavailable),
    (204, b"", Unavailable),
], ids=lambda v: str(v)[:40])
def test_the_documented_rows_of_the_table(status, body, expected):
    raw = json.dumps({"message": "m", **body}).encode() if isinstance(body, dict) else body
    assert type(classify(status, raw)) is expected


def test_no_per_record_error_code_dead_letters():
    """Review item 7: AWS documents only retryable per-record codes; any other is not believed."""
    for code in ("ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException",
                 "KMSAccessDeniedException", "SomethingNew", "", *VALIDATION_CODES):
        assert not is_record_rejection(code)


# -- the policy over the whole table ---------------------------------------------------------------


class RecordingAbort(threading.Event):
    """An abort event that never aborts and never sleeps: it records each wait and moves a fake clock."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def wait(self, timeout=None):
        self.log.append(("wait", timeout))
        self.now += timeout or 0.0
        return False


class ScriptedSink:
    """Raises ``error`` for the first ``times`` calls, then accepts everything."""

    def __init__(self, error: BaseException, log: list, times: int = 3) -> None:
        self.error, self.log, self.times = error, log, times
        self.accepted: list[bytes] = []

    def put_records(self, records):
        self.log.append(("call", tuple(d for d, _, _ in records)))
        if self.times:
            self.times -= 1
            raise self.error
        self.accepted.extend(d for d, _, _ in records)
        return PutResult()

    def close(self):
        pass


def deliver_through(error: BaseException) -> tuple[list, list, ScriptedSink]:
    log: list = []
    dead: list = []
    # Kinesis names records of the call it answers: the next call (without them) is a different call.
    sink = ScriptedSink(error, log, times=1 if isinstance(error, RecordsRejected) else 3)
    abort = RecordingAbort(log)
    delivery = Delivery(sink, TailerMetrics(), backoff=Backoff(0.1, 10.0), abort=abort, clock=abort.clock,
                        reject=lambda _b, record, _r: dead.append(record[0]), permanent_retry_seconds=30.0)
    batch = Batch(records=[(b"line-%d\n" % i, f"k{i}", None) for i in range(RECORDS)])
    delivery.deliver(batch)
    while batch.held:  # records refused alone are handed back; the shipper sends them again later
        log.append(("wait", 30.0))
        batch = Batch(records=[batch.records[i] for i in batch.held])
        delivery.deliver(batch)
    return log, dead, sink


def assert_backed_off(log: list) -> None:
    """The same records are never sent again without a wait for a backoff in between."""
    last_call = None
    for kind, value in log:
        if kind == "wait":
            assert value is not None and value >= 0
            last_call = None
        else:
            assert value != last_call, f"{value} sent again at once: {log}"
            last_call = value


def test_delivery_policy_over_every_status_and_body():
    """Delivery sees only the error: one delivery per distinct outcome of the whole table."""
    outcomes = {}
    for status in STATUSES:
        for shape, body in BODIES:
            error = classify(status, body)
            outcomes.setdefault((type(error), tuple(getattr(error, "indexes", ()))), (status, shape, error))
    assert len(outcomes) >= 10
    for status, shape, error in outcomes.values():
        log, dead, sink = deliver_through(error)
        sent = {b"line-%d\n" % i for i in range(RECORDS)}
        if isinstance(error, RecordsRejected):
            expected_dead = {b"line-%d\n" % i for i in error.indexes}
            assert set(dead) == expected_dead, (status, shape)
            assert set(sink.accepted) == sent - expected_dead
        else:
            assert dead == [], f"{status} {shape}: dead-lettered {dead}"
            assert set(sink.accepted) == sent, (status, shape)
        if not isinstance(error, RecordsRejected | RequestRejected):
            assert_backed_off(log)
        if isinstance(error, Permanent) and not isinstance(error, RequestRejected):
            assert ("wait", 30.0) in log, "permanent errors are retried slowly"


# -- every exception botocore, urllib3, the credential providers and the OS raise -------------------


def instantiate(cls: type[BaseException]) -> BaseException:
    if issubclass(cls, boto_exceptions.ClientError):
        return cls({"Error": {"Code": "ExpiredTokenException", "Message": "m"},
                    "ResponseMetadata": {"HTTPStatusCode": 400}}, "AssumeRoleWithWebIdentity")
    if cls is boto_exceptions.WaiterError:
        return cls(name="w", reason="r", last_response={})
    if isinstance(getattr(cls, "fmt", None), str):
        fields = {f for _, f, _, _ in string.Formatter().parse(cls.fmt) if f}
        return cls(**{f: "x" for f in fields})
    if cls is urllib3_exceptions.InvalidChunkLength:
        return cls(type("R", (), {"tell": lambda self: 0, "length_remaining": 1})(), b"x")
    for args in ((), ("message",), (None, "message"), (None, None, "message")):
        try:
            return cls(*args)
        except TypeError:
            continue
    raise AssertionError(f"cannot build {cls}")


def foreign_exceptions() -> list[BaseException]:
    found = []
    for module in (boto_exceptions, urllib3_exceptions):
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == module.__name__:
                found.append(instantiate(cls))
    found += [OSError(5, "EIO"), ConnectionResetError(104, "reset"), TimeoutError("timed out"),
              BrokenPipeError(32, "pipe"), socket.gaierror(-2, "Name or service not known"),
              ssl.SSLError(1, "CERTIFICATE_VERIFY_FAILED"), ValueError("bad"), KeyError("Expiration"),
              TypeError("NoneType"), RuntimeError("boom"), AttributeError("x")]
    return found


FOREIGN = foreign_exceptions()


def test_there_are_many_foreign_exceptions_to_check():
    assert len(FOREIGN) > 140


@pytest.mark.parametrize("credentials", [False, True], ids=["send", "credentials"])
def test_every_foreign_exception_becomes_a_ship_error_that_never_dead_letters(credentials):
    config_errors = (boto_exceptions.NoCredentialsError, boto_exceptions.PartialCredentialsError,
                     boto_exceptions.UnknownCredentialError, boto_exceptions.ProfileNotFound,
                     boto_exceptions.InvalidConfigError)
    for exc in FOREIGN:
        error = translate_exception(exc, credentials=credentials)
        assert isinstance(error, ShipError) and not isinstance(error, RecordsRejected), (exc, error)
        if isinstance(exc, config_errors):
            assert isinstance(error, AccessDenied)
        elif credentials:
            assert isinstance(error, CredentialsUnavailable), (exc, error)
        log, dead, sink = deliver_through(error)
        assert dead == [] and len(sink.accepted) == RECORDS
        assert_backed_off(log)


def test_a_sink_that_lets_a_foreign_exception_through_is_still_backed_off():
    for exc in FOREIGN[::7]:
        log, dead, sink = deliver_through(exc)
        assert dead == [] and len(sink.accepted) == RECORDS
        assert_backed_off(log)


class BrokenCredentials(boto3.Session):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
        self.exc = exc

    def get_credentials(self):
        raise self.exc


def test_the_kinesis_sink_translates_whatever_its_credentials_and_http_stack_raise():
    records = [(b"x\n", "k", None)]
    session = BrokenCredentials(RuntimeError())
    sink = KinesisSink("s", endpoint_url="http://127.0.0.1:9", region="us-east-1", session=session)
    for exc in FOREIGN:
        session.exc = exc
        with pytest.raises(ShipError) as raised:
            sink.put_records(records)
        assert not isinstance(raised.value, RecordsRejected)
    sink.close()
    sink = KinesisSink("s", endpoint_url="http://127.0.0.1:9", region="us-east-1",
                       session=boto3.Session(aws_access_key_id="a", aws_secret_access_key="b"))
    for exc in FOREIGN:
        def send(_request, exc=exc):
            raise exc

        sink._http.send = send  # a test double of the pooled HTTP session
        with pytest.raises(ShipError) as raised:
            sink.put_records(records)
        assert isinstance(raised.value, Retryable | AccessDenied), (exc, raised.value)
    sink.close()

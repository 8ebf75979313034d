"""Firehose's whole error table: every status 300–599 × every body shape, and every PutRecordBatch answer.

The same invariants as Kinesis (tests/unit/test_kinesis_errors.py): nothing is dead-lettered unless
Firehose named that record; no failure sends the same records again without backing off first.
"""

from __future__ import annotations

import json

import boto3
import pytest

from tailer.aws_json import _pooled_session
from tailer.errors import (
    AccessDenied,
    CallRefused,
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
from tailer.firehose import FirehoseSink
from tailer.firehose_errors import (
    FIREHOSE_DENIED_CODES,
    FIREHOSE_INVALID_CALL_CODES,
    FIREHOSE_NOT_FOUND_CODES,
    FIREHOSE_THROTTLED_CODES,
    FIREHOSE_UNAVAILABLE_CODES,
    FIREHOSE_VALIDATION_CODES,
    classify_answer,
    is_record_rejection,
)
from tailer.kinesis_errors import parse_error_body
from tests.unit.test_kinesis_errors import FOREIGN, RECORDS, assert_backed_off, deliver_through

CODES = sorted(FIREHOSE_THROTTLED_CODES | FIREHOSE_UNAVAILABLE_CODES | FIREHOSE_NOT_FOUND_CODES
               | FIREHOSE_DENIED_CODES | FIREHOSE_VALIDATION_CODES | FIREHOSE_INVALID_CALL_CODES
               | {"SomethingNewException"})
NAMING = {  # validation messages in Firehose's (Coral's) words
    "records.3.member.data": "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1024001 "
                             "cap=1024001]' at 'records.3.member.data' failed to satisfy constraint: Member must "
                             "have length less than or equal to 1024000",
    "two records": "2 validation errors detected: Value at 'records.1.member.data' failed to satisfy constraint: "
                   "Member must have length less than or equal to 1024000; Value at 'records.5.member.data' "
                   "failed to satisfy constraint: Member must have length less than or equal to 1024000",
    "deliveryStreamName": "1 validation error detected: Value 'my hose' at 'deliveryStreamName' failed to "
                          "satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    "records": "1 validation error detected: Value '[...]' at 'records' failed to satisfy constraint: Member "
               "must have length less than or equal to 500",
    "out of range": "1 validation error detected: Value at 'records.9.member.data' failed to satisfy "
                    "constraint: Member must have length less than or equal to 1024000",
    "no count": "Value at 'records.1.member.data' failed to satisfy constraint: too long",
    "size": "Records size exceeds 4 MiB limit",
}
NAMED_INDEXES = {"records.3.member.data": [2], "two records": [0, 4]}


def bodies() -> list[tuple[str, bytes]]:
    out = []
    for code in CODES:
        out.append((f"json:{code}", json.dumps({"__type": code, "message": "m"}).encode()))
        out.append((f"ns:{code}", json.dumps({"__type": f"com.amazonaws.firehose.v20150804#{code}",
                                               "Message": "m"}).encode()))
    for code in ("InvalidArgumentException", "ValidationException"):
        for name, message in NAMING.items():
            out.append((f"{code}:{name}", json.dumps({"__type": code, "message": message}).encode()))
    named = json.dumps({"__type": "InvalidArgumentException", "message": NAMING["records.3.member.data"]})
    out += [
        ("html", b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"),
        ("html naming a record", b"<html>at 'records.1.member.data' failed to satisfy constraint</html>"),
        ("empty", b""),
        ("truncated naming json", named.encode()[:-3]),
        ("json list", b'[{"__type":"InvalidArgumentException"}]'),
        ("json string", b'"ServiceUnavailableException"'),
        ("binary", bytes(range(256))),
        ("plain text", b"upstream connect error or disconnect/reset before headers"),
    ]
    return out


BODIES = bodies()
STATUSES = range(300, 600)


def classify(status: int, body: bytes) -> ShipError:
    code, message, from_firehose = parse_error_body(body)
    return classify_answer(status, code, message, record_count=RECORDS, from_firehose=from_firehose)


def test_every_status_and_body_is_classified_and_only_firehose_naming_a_record_dead_letters_it():
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


@pytest.mark.parametrize(("status", "body", "expected"), [
    (500, {"__type": "ServiceUnavailableException", "message": "Slow down."}, Throttled),
    (400, {"__type": "LimitExceededException"}, Throttled),
    (400, {"__type": "ThrottlingException"}, Throttled),
    (429, b"", Throttled),
    (400, {"__type": "ResourceInUseException"}, Unavailable),
    (500, {"__type": "InternalFailure"}, Unavailable),
    (400, {"__type": "ResourceNotFoundException"}, StreamNotFound),
    (400, {"__type": "InvalidKMSResourceException"}, AccessDenied),
    (400, {"__type": "AccessDeniedException"}, AccessDenied),
    (400, {"__type": "ExpiredTokenException"}, AccessDenied),
    (400, {"__type": "InvalidSourceException"}, RequestInvalid),
    (400, {"__type": "InvalidArgumentException", "message": NAMING["deliveryStreamName"]}, RequestInvalid),
    (400, {"__type": "InvalidArgumentException", "message": NAMING["records"]}, RequestRejected),
    (400, {"__type": "InvalidArgumentException", "message": NAMING["size"]}, RequestRejected),
    (400, {"__type": "InvalidArgumentException", "message": NAMING["records.3.member.data"]}, RecordsRejected),
    (500, {"__type": "InvalidArgumentException", "message": NAMING["records.3.member.data"]}, Unavailable),
    (400, {"__type": "SomethingNewException"}, CallRefused),
    (404, b"<html>Not Found</html>", CallRefused),
    (413, b"<html>Request Entity Too Large</html>", RequestRejected),
    (502, b"<html>Bad Gateway</html>", Unavailable),
], ids=lambda v: str(v)[:40])
def test_the_documented_rows_of_the_table(status, body, expected):
    raw = json.dumps({"message": "m", **body}).encode() if isinstance(body, dict) else body
    assert type(classify(status, raw)) is expected


def test_no_per_record_error_code_dead_letters():
    """Review item 7: Firehose documents only retryable per-record codes; any other is not believed."""
    for code in ("ServiceUnavailableException", "InternalFailure", "KMSThrottlingException", "SomethingNew", "",
                 *FIREHOSE_VALIDATION_CODES):
        assert not is_record_rejection(code)


def test_delivery_policy_over_every_status_and_body():
    outcomes = {}
    for status in STATUSES:
        for shape, body in BODIES:
            error = classify(status, body)
            outcomes.setdefault((type(error), tuple(getattr(error, "indexes", ()))), (status, shape, error))
    assert len(outcomes) >= 9
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


# -- PutRecordBatch answers with a 200 ---------------------------------------------------------------------

OK = {"RecordId": "r"}
FAIL = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
ANSWERS = [  # (name, answer, failed indexes, rejected indexes) — None: the whole call goes again
    ("all in", {"FailedPutCount": 0, "Encrypted": False, "RequestResponses": [OK, OK, OK]}, [], []),
    ("one throttled", {"FailedPutCount": 1, "RequestResponses": [OK, FAIL, OK]}, [1], []),
    ("internal failure", {"FailedPutCount": 1, "RequestResponses": [{"ErrorCode": "InternalFailure"}, OK, OK]},
     [0], []),
    ("a validation code per record: not believed, sent again", {"FailedPutCount": 1,
                       "RequestResponses": [OK, OK, {"ErrorCode": "InvalidArgumentException"}]}, [2], []),
    ("neither id nor code", {"FailedPutCount": 0, "RequestResponses": [OK, {}, OK]}, [1], []),
    ("count too low", {"FailedPutCount": 0, "RequestResponses": [OK, FAIL, OK]}, None, None),
    ("count too high", {"FailedPutCount": 2, "RequestResponses": [OK, FAIL, OK]}, None, None),
    ("too few entries", {"FailedPutCount": 0, "RequestResponses": [OK, OK]}, None, None),
    ("entries not a list", {"FailedPutCount": 0, "RequestResponses": {"0": OK}}, None, None),
    ("no count", {"RequestResponses": [OK, OK, OK]}, None, None),
    ("count not a number", {"FailedPutCount": "0", "RequestResponses": [OK, OK, OK]}, None, None),
    ("an entry not an object", {"FailedPutCount": 0, "RequestResponses": [OK, "x", OK]}, None, None),
    ("kinesis shape", {"FailedRecordCount": 0, "Records": [OK, OK, OK]}, None, None),
    ("not json", b"<html>ok</html>", None, None),
    ("empty", b"", None, None),
]


@pytest.mark.parametrize(("name", "answer", "failed", "rejected"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_every_shape_of_a_200_answer_is_read_record_by_record_or_sent_again_whole(name, answer, failed, rejected):
    content = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    if failed is None:
        with pytest.raises(Unavailable):
            FirehoseSink._result(content, 3)
        return
    result = FirehoseSink._result(content, 3)
    assert [i for i, _, _ in result.failed] == failed
    assert [i for i, _, _ in result.rejected] == rejected


def test_the_sink_translates_whatever_its_http_stack_raises():
    sink = FirehoseSink("hose", endpoint_url="http://127.0.0.1:9", region="us-east-1",
                        session=boto3.Session(aws_access_key_id="a", aws_secret_access_key="b"))
    try:
        for exc in FOREIGN:
            def send(_request, exc=exc):
                raise exc

            sink._http.send = send  # a test double of the pooled HTTP session
            with pytest.raises(ShipError) as raised:
                sink.put_records([(b"x\n", "", None)])
            assert isinstance(raised.value, Retryable | AccessDenied), (exc, raised.value)
    finally:
        sink.close()


def test_the_pooled_http_session_is_where_the_sinks_expect_it():
    """Both sinks send on the boto3 client's own pooled session, a private part of botocore: an upgrade
    that moves it must fail here, not in production."""
    client = boto3.client("firehose", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    session = _pooled_session(client)
    assert callable(session.send)
    client.close()

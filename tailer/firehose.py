"""FirehoseSink: PutRecordBatch to an Amazon Data Firehose delivery stream.

The same path as :class:`tailer.kinesis.KinesisSink` (boto3's credentials,
region, endpoint, SigV4 and pooled session through :mod:`tailer.aws_json`; the
body written and read with orjson), for ``Firehose_20150804.PutRecordBatch``.
Records come from :class:`tailer.firehose_packing.NdjsonPacker` (many lines per
record); their partition keys are ignored: Firehose has none.

An answer is read record by record: an entry with a ``RecordId`` is in the
stream; one with an ``ErrorCode`` is sent again (``ServiceUnavailableException``,
``InternalFailure``, and any code Firehose does not document there: never a dead
letter); an entry with neither, or an empty ``RecordId``, is sent again. A ``FailedPutCount`` that disagrees with the entries, or entries
that do not match the records sent, make the answer unreadable: the whole call
is sent again (duplicates, never a loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import boto3
import orjson
import pybase64

from .aws_json import JsonApi
from .credentials import CredentialRenewal
from .deadline import DEFAULT_CALL_DEADLINE_SECONDS
from .errors import Unavailable
from .firehose_errors import classify_answer, is_record_rejection
from .kinesis_errors import parse_error_body, translate_exception
from .sink import PutResult, Record

__all__ = ["FirehoseSink"]

_TARGET = "Firehose_20150804.PutRecordBatch"
_b64 = pybase64.b64encode  # SIMD base64, as in tailer/kinesis.py


class FirehoseSink:
    """Thread-safe: PutRecordBatch calls may run concurrently on the pooled HTTP session."""

    def __init__(
        self,
        delivery_stream: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_connections: int = 10,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 15.0,
        session: boto3.Session | None = None,
        renewal: CredentialRenewal | None = None,
        call_deadline_seconds: float = DEFAULT_CALL_DEADLINE_SECONDS,
    ) -> None:
        self.delivery_stream = delivery_stream
        self._api = JsonApi("firehose", session=session, endpoint_url=endpoint_url, region=region,
                            max_connections=max_connections, connect_timeout_seconds=connect_timeout_seconds,
                            read_timeout_seconds=read_timeout_seconds, renewal=renewal,
                            call_deadline_seconds=call_deadline_seconds)
        self._http = self._api.http  # the pooled HTTP session (tests replace its send)
        self._name_json = orjson.dumps(delivery_stream)

    def put_records(self, records: Sequence[Record]) -> PutResult:
        """One PutRecordBatch call; every exception underneath leaves as a ShipError."""
        answer = self._api.post_renewing(_TARGET, self._encode(records))
        if answer.status != 200:
            code, message, from_firehose = parse_error_body(answer.content, answer.error_type)
            raise classify_answer(answer.status, code, message, record_count=len(records),
                                  from_firehose=from_firehose)
        return self._result(answer.content, len(records))

    def _encode(self, records: Sequence[Record]) -> bytes:
        parts = b",".join(b'{"Data":"%s"}' % _b64(data) for data, _key, _hash in records)
        return b'{"DeliveryStreamName":%s,"Records":[%s]}' % (self._name_json, parts)

    @staticmethod
    def _result(content: bytes, count: int) -> PutResult:
        try:
            doc = orjson.loads(content)
            failed_count = doc["FailedPutCount"]
            entries = doc["RequestResponses"]
            if not isinstance(failed_count, int) or not isinstance(entries, list) or len(entries) != count:
                raise TypeError("FailedPutCount or RequestResponses do not match the records sent")
            result = PutResult()
            errors = 0
            for i, entry in enumerate(entries):
                code = entry.get("ErrorCode")
                if code:
                    errors += 1
                    target = result.rejected if is_record_rejection(code) else result.failed
                    target.append((i, str(code), str(entry.get("ErrorMessage") or "")))
                elif not isinstance(entry.get("RecordId"), str) or not entry["RecordId"]:  # not an answer: again
                    result.failed.append((i, "BadResponse", "no RecordId and no ErrorCode"))
            if errors != failed_count:
                raise TypeError(f"FailedPutCount {failed_count} but {errors} entries with an ErrorCode")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise Unavailable(f"unreadable PutRecordBatch answer: {exc}", code="BadResponse") from exc
        return result

    def describe(self) -> dict:
        """The delivery stream's description (control plane, plain boto3)."""
        try:
            return self.client.describe_delivery_stream(DeliveryStreamName=self.delivery_stream)[
                "DeliveryStreamDescription"]
        except Exception as exc:  # translated in one place
            raise translate_exception(exc) from exc

    @property
    def client(self):
        """The boto3 client for control-plane calls (rebuilt when the credentials are renewed)."""
        return self._api.client

    def interrupt(self) -> None:
        """End every call in flight now (the drain timeout; tailer/deadline.py)."""
        self._api.watchdog.interrupt()

    def close(self) -> None:
        self._api.close()

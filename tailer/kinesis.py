"""KinesisSink: PutRecords through boto3's session, credentials, endpoint and HTTP stack.

boto3 resolves the credential chain, the region and the endpoint
(``--endpoint-url`` or ``AWS_ENDPOINT_URL_KINESIS``) and provides its pooled
urllib3 session; :mod:`tailer.aws_json` signs (:mod:`tailer.sigv4`). For the one hot call,
PutRecords, the request body is written with orjson and base64 and only the
fields we need are read back: botocore's generic model-driven serializer and
parser cost ~11 µs of CPU per record here, this path ~4.5 (see
docs/performance.md). Everything else (control-plane calls) goes through the
ordinary boto3 client.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from itertools import repeat as _repeat
from operator import itemgetter

import boto3
import orjson
import pybase64

from .aws_json import JsonApi
from .credentials import CredentialRenewal
from .deadline import DEFAULT_CALL_DEADLINE_SECONDS
from .errors import Unavailable
from .kinesis_answer import StoredShards, proven_stored
from .kinesis_errors import (
    MAX_SEQUENCE_DIGITS,
    classify_answer,
    is_record_rejection,
    is_sequence_number,
    parse_error_body,
    translate_exception,
)
from .sink import PutResult, Record
from .speedups import compiled

__all__ = ["KinesisSink"]

_TARGET = "Kinesis_20131202.PutRecords"
# SIMD base64 (pybase64): a 51,200-byte KPL aggregate in ~3 µs where binascii takes ~110 (docs/performance.md);
# tests/unit/test_put_records_body.py holds the body to botocore's own serializer under hypothesis.
_b64 = pybase64.b64encode
_dumps = orjson.dumps
_RECORD = b'{"Data":"%s","PartitionKey":%s}'
_RECORD_WITH_HASH = b'{"Data":"%s","PartitionKey":%s,"ExplicitHashKey":"%s"}'
_FEW_RECORDS = 64
_get = dict.get
_data_of, _key_of, _hash_key_of = itemgetter(0), itemgetter(1), itemgetter(2)
# Between two records' base64 when every key is plain ASCII (no quote, backslash or control character):
# the JSON string of such a key is the key in quotes, so every key goes into one str join (NUL-separated:
# a NUL is a control character, never in a key of this path) instead of one orjson call per record.
_KEY_THEN_NEXT = '"},{"Data":"\x00","PartitionKey":"'


def _all_stored(entries: list) -> list[str] | None:
    """The ShardIds, if every entry is a stored record; else None (the entry-by-entry reading decides).

    The same test as :meth:`KinesisSink._result_entry_by_entry` makes per entry — no ErrorCode, a
    SequenceNumber of 1 to 128 ASCII digits, a non-empty string ShardId — made over the whole answer in
    C loops (``map``, ``join``, ``isdigit``): ~0.6 ms of Python per 500-entry answer less
    (tests/unit/test_put_records_answer.py checks both readings agree under hypothesis).
    """
    try:
        if any(map(_get, entries, _repeat("ErrorCode"))):
            return None
        sequences = list(map(_get, entries, _repeat("SequenceNumber")))
        shards = list(map(_get, entries, _repeat("ShardId")))
        digits = "".join(sequences)  # TypeError unless every one is a string
        "".join(shards)
    except TypeError:  # an entry that is not an object, a number where text belongs: entry by entry
        return None
    # str.isdigit goes through Unicode tables (~130 µs here); ASCII bytes' isdigit is a plain loop.
    if not (digits.isascii() and digits.encode().isdigit() and all(sequences) and all(shards)):
        return None
    if max(map(len, sequences)) > MAX_SEQUENCE_DIGITS:
        return None
    return shards


class KinesisSink:
    """Thread-safe: PutRecords calls may run concurrently on the pooled HTTP session."""

    def __init__(
        self,
        stream: str,
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
        self.stream = stream
        self._api = JsonApi("kinesis", session=session, endpoint_url=endpoint_url, region=region,
                            max_connections=max_connections, connect_timeout_seconds=connect_timeout_seconds,
                            read_timeout_seconds=read_timeout_seconds, renewal=renewal,
                            call_deadline_seconds=call_deadline_seconds)
        self._http = self._api.http  # the pooled HTTP session (tests replace its send)
        self._stream_json = orjson.dumps(stream)

    def put_records(self, records: Sequence[Record]) -> PutResult:
        """One PutRecords call; every exception underneath leaves as a ShipError."""
        answer = self._api.post_renewing(_TARGET, self._encode(records))
        if answer.status != 200:
            code, message, from_kinesis = parse_error_body(answer.content, answer.error_type)
            raise classify_answer(answer.status, code, message, record_count=len(records), from_kinesis=from_kinesis)
        return self._result(answer.content, len(records))

    @staticmethod
    def _result(content: bytes, count: int) -> PutResult:
        if proven_stored(content, count):  # the common answer, proven from its bytes (tailer/kinesis_answer.py)
            return PutResult(placed=StoredShards(content, count))
        try:
            doc = orjson.loads(content)
            failed_count = doc["FailedRecordCount"]
            entries = doc["Records"]
            if not isinstance(failed_count, int) or not isinstance(entries, list) or len(entries) != count:
                raise TypeError("FailedRecordCount or Records do not match the records sent")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise Unavailable(f"unreadable PutRecords answer: {exc}", code="BadResponse") from exc
        placed = _all_stored(entries) if failed_count == 0 else None
        if placed is not None:
            return PutResult(placed=placed)
        return KinesisSink._result_entry_by_entry(entries, count)

    @staticmethod
    def _result_entry_by_entry(entries: list, count: int) -> PutResult:
        """Each entry on its own: stored, failed (sent again) or unreadable (sent again)."""
        try:
            result = PutResult(placed=[None] * count)
            for i, entry in enumerate(entries):
                code = entry.get("ErrorCode")
                if code:
                    target = result.rejected if is_record_rejection(code) else result.failed
                    target.append((i, str(code), str(entry.get("ErrorMessage") or "")))
                    continue
                sequence, shard = entry.get("SequenceNumber"), entry.get("ShardId")
                if is_sequence_number(sequence) and isinstance(shard, str) and shard:
                    result.placed[i] = shard
                else:  # not a Kinesis answer for a stored record: send it again (a duplicate, never a loss)
                    result.failed.append((i, "BadResponse", "no numeric SequenceNumber and ShardId, no ErrorCode"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise Unavailable(f"unreadable PutRecords answer: {exc}", code="BadResponse") from exc
        return result

    def _encode(self, records: Sequence[Record]) -> bytes:
        """The PutRecords body botocore's serializer would make (tests/unit/test_put_records_body.py).

        Many small records: with plain ASCII keys and no ExplicitHashKey (random keys) one pass of compiled
        code (:meth:`_encode_compiled`) or, where it is not built, the C loops of :meth:`_encode_plain_keys`,
        else one ``%`` per record, then one join. Few records are large ones (KPL
        aggregates): their base64 goes into the one join directly, so the call's megabytes are
        copied once, not twice, and one copy fewer is alive per call in flight.
        """
        if len(records) > _FEW_RECORDS:
            body = self._encode_compiled(records)
            if body is None:
                body = self._encode_plain_keys(records)
            return body if body is not None else self._encode_each(records)
        parts = [self._head()]
        for data, key, hash_key in records:
            parts += (b'{"Data":"', _b64(data), b'","PartitionKey":', _dumps(key))
            parts.append(b'},' if hash_key is None else b',"ExplicitHashKey":"%s"},' % hash_key.encode())
        parts[-1] = parts[-1][:-1] + b"]}"
        return b"".join(parts)

    def _head(self) -> bytes:
        """Every body's start, up to its first record."""
        return b'{"StreamName":%s,"Records":[' % self._stream_json

    def _encode_compiled(self, records: Sequence[Record]) -> bytes | None:
        """:meth:`_encode_plain_keys`' body in one C pass (tailer/_speedups.c), for the same records (a list of
        (bytes, str, None) with keys that need no escaping); None where it does not apply or is not built."""
        if compiled is None or type(records) is not list:
            return None
        return compiled.put_records_body(self._head(), records, b"]}")

    def _encode_each(self, records: Sequence[Record]) -> bytes:
        """Many records, any keys: one ``%`` per record, then one join."""
        parts = [_RECORD % (_b64(data), _dumps(key)) if hash_key is None else
                 _RECORD_WITH_HASH % (_b64(data), _dumps(key), hash_key.encode())
                 for data, key, hash_key in records]
        return b"%s%s]}" % (self._head(), b",".join(parts))

    def _encode_plain_keys(self, records: Sequence[Record]) -> bytes | None:
        """The same body for many records without ExplicitHashKey whose keys need no JSON escaping (random
        keys, most field keys), in C loops: base64 per record, one join for every key, one for the body;
        None for any other call (the path above). tests/unit/test_put_records_body.py holds both to
        botocore's serializer and to each other byte for byte."""
        if list(map(_hash_key_of, records)).count(None) != len(records):
            return None
        keys = list(map(_key_of, records))
        try:
            joined = "".join(keys)
        except TypeError:  # not every key is a str
            return None
        if not (joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined):
            return None  # (isprintable: no control character, so no NUL inside a key either)
        keys_json = ('","PartitionKey":"' + _KEY_THEN_NEXT.join(keys) + '"}]}').encode().split(b"\x00")
        head = self._head() + b'{"Data":"'
        return b"".join(chain((head,), chain.from_iterable(zip(map(_b64, map(_data_of, records)), keys_json, strict=True))))

    # -- control plane (ordinary boto3 calls) ----------------------------------------------

    def list_shards(self) -> list[dict]:
        shards, token = [], None
        try:
            while True:
                kwargs = {"NextToken": token} if token else {"StreamName": self.stream}
                with self._api.watchdog.call():  # under the call deadline: a trickled answer ends (item 5)
                    page = self.client.list_shards(**kwargs)
                shards.extend(page["Shards"])
                token = page.get("NextToken")
                if not token:
                    return shards
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

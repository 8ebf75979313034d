"""KinesisSink: PutRecords through boto3's session, credentials, endpoint and HTTP stack.

boto3 resolves the credential chain, the region and the endpoint
(``--endpoint-url`` or ``AWS_ENDPOINT_URL_KINESIS``) and provides SigV4 signing
and its pooled urllib3 session. For the one hot call, PutRecords, the request
body is written with orjson and base64 and only the fields we need are read
back: botocore's generic model-driven serializer and parser cost ~11 µs of CPU
per record here, this path ~4.5 (see docs/performance.md). Everything else
(control-plane calls) goes through the ordinary boto3 client.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import boto3
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError

from .errors import AccessDenied, ShipError, Unavailable, map_kinesis_error
from .sink import PutResult, Record

__all__ = ["KinesisSink", "map_client_error"]

_TARGET = "Kinesis_20131202.PutRecords"
_JSON_11 = "application/x-amz-json-1.1"
_b64 = base64.b64encode


def map_client_error(exc: Exception) -> ShipError:
    """Translate an exception from a boto3 client call (control plane)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        return map_kinesis_error(status, err.get("Code", ""), err.get("Message", ""))
    if isinstance(exc, NoCredentialsError):
        return AccessDenied(f"no AWS credentials found: {exc}", code="NoCredentials")
    return Unavailable(f"{type(exc).__name__}: {exc}", code=type(exc).__name__)


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
    ) -> None:
        self.stream = stream
        self._session = session or boto3.Session()
        self.client = self._session.client(
            "kinesis",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"max_attempts": 0},  # the tailer retries, with its own backoff
                parameter_validation=False,
                max_pool_connections=max_connections,
                connect_timeout=connect_timeout_seconds,
                read_timeout=read_timeout_seconds,
                tcp_keepalive=True,
            ),
        )
        self._url = self.client.meta.endpoint_url
        self._region = self.client.meta.region_name
        # The client's own pooled urllib3 session: same proxies, CA bundle, timeouts and pool.
        self._http = self.client._endpoint.http_session
        self._stream_json = orjson.dumps(stream)

    def put_records(self, records: Sequence[Record]) -> PutResult:
        body = self._encode(records)
        request = AWSRequest(
            method="POST", url=self._url, data=body,
            headers={"Content-Type": _JSON_11, "X-Amz-Target": _TARGET},
        )
        credentials = self._session.get_credentials()
        if credentials is None:
            raise AccessDenied("no AWS credentials found (env, profile, web identity, or instance role)",
                               code="NoCredentials")
        try:
            SigV4Auth(credentials.get_frozen_credentials(), "kinesis", self._region).add_auth(request)
            response = self._http.send(request.prepare())
        except (HTTPClientError, BotoCoreError, OSError) as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}", code=type(exc).__name__) from exc
        if response.status_code != 200:
            raise self._error_from(response.status_code, response.content)
        try:
            doc = orjson.loads(response.content)
            failed_count = doc["FailedRecordCount"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise Unavailable(f"unreadable PutRecords response: {exc}", code="BadResponse") from exc
        if not failed_count:
            return PutResult()
        entries = doc.get("Records") or []
        return PutResult([
            (i, e.get("ErrorCode", ""), e.get("ErrorMessage", ""))
            for i, e in enumerate(entries) if e.get("ErrorCode")
        ])

    def _encode(self, records: Sequence[Record]) -> bytes:
        parts = []
        append = parts.append
        for data, key, hash_key in records:
            if hash_key is None:
                append(b'{"Data":"%s","PartitionKey":%s}' % (_b64(data), orjson.dumps(key)))
            else:
                append(b'{"Data":"%s","PartitionKey":%s,"ExplicitHashKey":"%s"}'
                       % (_b64(data), orjson.dumps(key), hash_key.encode()))
        return b'{"StreamName":%s,"Records":[%s]}' % (self._stream_json, b",".join(parts))

    @staticmethod
    def _error_from(status: int, content: bytes) -> ShipError:
        code, message = "", content[:300].decode("utf-8", "replace")
        try:
            doc = orjson.loads(content)
            code = doc.get("__type", "") or doc.get("code", "")
            message = doc.get("message") or doc.get("Message") or message
        except (orjson.JSONDecodeError, AttributeError):
            pass
        return map_kinesis_error(status, code, message)

    # -- control plane (ordinary boto3 calls) ----------------------------------------------

    def list_shards(self) -> list[dict]:
        shards, token = [], None
        try:
            while True:
                kwargs = {"NextToken": token} if token else {"StreamName": self.stream}
                page = self.client.list_shards(**kwargs)
                shards.extend(page["Shards"])
                token = page.get("NextToken")
                if not token:
                    return shards
        except (ClientError, BotoCoreError) as exc:
            raise map_client_error(exc) from exc

    def close(self) -> None:
        self.client.close()

"""One signed POST to an AWS JSON-protocol API (Kinesis, Firehose), outside botocore's generic model.

Both sinks send their one hot call (PutRecords, PutRecordBatch) this way: boto3
resolves the credentials, region and endpoint and provides its pooled urllib3
session; SigV4 is :mod:`tailer.sigv4` (the same headers as botocore's signer, for
a fraction of its CPU); the body is written and read by the sink with orjson, because
botocore's model-driven serializer and parser cost more CPU than the rest of the
tailer (docs/performance.md). Everything else (control-plane calls) goes through
the ordinary boto3 client, :attr:`JsonApi.client`.

Reaching into the client's pooled session (``client._endpoint.http_session``) is
kept in :func:`_pooled_session` alone; tests/unit/test_firehose.py fails loudly if
a botocore upgrade moves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from botocore.awsrequest import AWSPreparedRequest
from botocore.config import Config

from .credentials import CredentialRenewal
from .deadline import DEFAULT_CALL_DEADLINE_SECONDS, CallWatchdog
from .deadline import install as install_deadline
from .errors import AccessDenied
from .kinesis_errors import parse_error_body, translate_exception
from .sigv4 import Signer

__all__ = ["Answer", "JsonApi"]

_JSON_11 = "application/x-amz-json-1.1"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content: bytes
    error_type: str  # the x-amzn-ErrorType header ("" when absent)


def _pooled_session(client):
    """The client's own urllib3 session: its proxies, CA bundle, timeouts and pool (private botocore)."""
    return client._endpoint.http_session


class JsonApi:
    """Thread-safe: calls may run concurrently on the pooled HTTP session."""

    def __init__(self, service: str, *, session: boto3.Session | None = None, endpoint_url: str | None = None,
                 region: str | None = None, max_connections: int = 10, connect_timeout_seconds: float = 5.0,
                 read_timeout_seconds: float = 15.0, renewal: CredentialRenewal | None = None,
                 call_deadline_seconds: float = DEFAULT_CALL_DEADLINE_SECONDS) -> None:
        self.service = service
        self.session = session or boto3.Session()
        self._renewal = renewal
        self._client_args = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "config": Config(
                retries={"max_attempts": 0},  # the tailer retries, with its own backoff
                parameter_validation=False,
                max_pool_connections=max_connections,
                connect_timeout=connect_timeout_seconds,
                read_timeout=read_timeout_seconds,
                tcp_keepalive=True,
            ),
        }
        self.client = self.session.client(service, **self._client_args)
        self.url = self.client.meta.endpoint_url
        self.region = self.client.meta.region_name
        self.http = _pooled_session(self.client)
        self._signer = Signer(self.url, service, self.region, _JSON_11)
        install_deadline(self.http)  # tailer/deadline.py: a trickling answer ends at the call's deadline
        self.watchdog = CallWatchdog(call_deadline_seconds)

    def post(self, target: str, body: bytes) -> Answer:
        """Sign and send one call; every exception underneath leaves as a ShipError."""
        with self.watchdog.call():  # the credential fetch too (a trickling STS): tailer/credentials.py
            frozen = self.credentials()
            try:
                # The headers botocore's AWSRequest + SigV4Auth + prepare() would make (tailer/sigv4.py), at a
                # fraction of the CPU; sent by botocore's own session, which maps urllib3's errors to its own.
                headers = self._signer.headers(frozen.access_key, frozen.secret_key, frozen.token, target, body)
                request = AWSPreparedRequest("POST", self.url, headers, body, stream_output=False, context={})
                response = self.http.send(request)
                return Answer(response.status_code, response.content, response.headers.get("x-amzn-ErrorType", ""))
            except Exception as exc:  # the one translation place: everything becomes a ShipError
                raise translate_exception(exc) from exc

    def post_renewing(self, target: str, body: bytes) -> Answer:
        """:meth:`post`; if the answer says the credentials are stale, once more with the chain resolved
        again (tailer/credentials.py: rotated keys are picked up, at most once per backoff)."""
        answer = self.post(target, body)
        if self._renewal is None:
            return answer
        if answer.status == 200:
            self._renewal.succeeded()
            return answer
        session = self._renewal.renew(parse_error_body(answer.content, answer.error_type)[0])
        if session is None:
            return answer
        old, self.session = self.client, session
        self.client = session.client(self.service, **self._client_args)
        old.close()  # one client per renewal otherwise: its pool and sockets are never released
        return self.post(target, body)

    def credentials(self):
        """Frozen credentials; refreshing ones (AssumeRole, web identity, SSO, IMDS) may fail here, for a while."""
        try:
            credentials = self.session.get_credentials()
            if credentials is None:
                raise AccessDenied("no AWS credentials found (env, profile, web identity, or instance role)",
                                   code="NoCredentials")
            return credentials.get_frozen_credentials()
        except Exception as exc:  # translated: see tailer.kinesis_errors
            raise translate_exception(exc, credentials=True) from exc

    def close(self) -> None:
        self.watchdog.close()
        self.client.close()

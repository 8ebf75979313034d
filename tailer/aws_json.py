"""One signed POST to an AWS JSON-protocol API (Kinesis, Firehose), outside botocore's generic model.

Both sinks send their one hot call (PutRecords, PutRecordBatch) this way: boto3
resolves the credentials, region and endpoint; SigV4 is :mod:`tailer.sigv4` (the
same headers as botocore's signer, for a fraction of its CPU); the body is written
and read by the sink with orjson, because botocore's model-driven serializer and
parser cost more CPU than the rest of the tailer (docs/performance.md). The POST
goes through :class:`tailer.http_exchange.Exchange` (sockets of our own, ~1 ms of
CPU less per call than botocore's session), configured from the client's own
session: its CA bundle and verification choice, socket options and pool size.
When that session would send through a proxy (``HTTPS_PROXY``/``HTTP_PROXY``
unless ``NO_PROXY`` excludes the endpoint, or a ``proxies`` config) or with a
client certificate, the POST keeps going through botocore's session itself
(:class:`BotocoreExchange`): CONNECT and proxy authentication stay botocore's.
Everything else (control-plane calls) goes through the ordinary boto3 client,
:attr:`JsonApi.client`.

Reaching into the client's pooled session (``client._endpoint.http_session`` and
its settings) is kept in :func:`_pooled_session` and :func:`http_settings` alone;
tests/unit/test_firehose_errors.py and tests/unit/test_http_exchange_wire.py fail
loudly if a botocore upgrade moves them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import boto3
from botocore.awsrequest import AWSPreparedRequest
from botocore.config import Config
from botocore.httpsession import create_urllib3_context, get_cert_path

from .credentials import CredentialRenewal
from .deadline import DEFAULT_CALL_DEADLINE_SECONDS, CallWatchdog
from .deadline import install as install_deadline
from .errors import AccessDenied
from .http_answer import Answer
from .http_exchange import Exchange
from .kinesis_errors import parse_error_body, translate_exception
from .sigv4 import Signer

__all__ = ["Answer", "BotocoreExchange", "HttpSettings", "JsonApi", "http_settings"]

_JSON_11 = "application/x-amz-json-1.1"


def _pooled_session(client):
    """The client's own urllib3 session: its proxies, CA bundle, timeouts and pool (private botocore)."""
    return client._endpoint.http_session


@dataclass(frozen=True, slots=True)
class HttpSettings:
    proxy: str | None  # the proxy botocore would send this endpoint's calls through
    verify: bool | str  # botocore's choice: verify against its bundle (True), this bundle (a path), or not
    client_cert: str | None
    socket_options: list


def http_settings(client, url: str) -> HttpSettings:
    """What botocore's session would do for ``url`` (private botocore, read in this one place)."""
    session = _pooled_session(client)
    return HttpSettings(session._proxy_config.proxy_url_for(url), session._verify, session._cert_file,
                        list(session._socket_options or ()))


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """botocore's context (its ciphers and options), verifying as botocore's session would."""
    context = create_urllib3_context()
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True  # urllib3 matches the host name itself; the ssl module does here
        context.load_verify_locations(cafile=get_cert_path(verify))
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class BotocoreExchange:
    """The POST through botocore's own session (behind a proxy, or with a client certificate)."""

    def __init__(self, session, url: str) -> None:
        self._session = session
        self.url = url

    def send(self, request: tuple[dict[str, str], bytes]) -> Answer:
        headers, body = request
        response = self._session.send(AWSPreparedRequest("POST", self.url, headers, body, stream_output=False,
                                                         context={}))
        return Answer(response.status_code, response.content, response.headers.get("x-amzn-ErrorType", ""))

    def close(self) -> None:
        pass  # the client owns its session


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
        install_deadline(_pooled_session(self.client))  # tailer/deadline.py: control-plane calls too
        self.http = self._exchange(max_connections, connect_timeout_seconds, read_timeout_seconds)
        self._signer = Signer(self.url, service, self.region, _JSON_11)
        self.watchdog = CallWatchdog(call_deadline_seconds)

    def _exchange(self, max_connections: int, connect_timeout: float, read_timeout: float):
        settings = http_settings(self.client, self.url)
        if settings.proxy or settings.client_cert:
            return BotocoreExchange(_pooled_session(self.client), self.url)
        context = ssl_context(settings.verify) if self.url.lower().startswith("https:") else None
        return Exchange(self.url, connect_timeout=connect_timeout, read_timeout=read_timeout,
                        max_connections=max_connections, ssl_context=context,
                        socket_options=settings.socket_options)

    def post(self, target: str, body: bytes) -> Answer:
        """Sign and send one call; every exception underneath leaves as a ShipError."""
        with self.watchdog.call():  # the credential fetch too (a trickling STS): tailer/credentials.py
            frozen = self.credentials()
            try:
                # The headers botocore's AWSRequest + SigV4Auth + prepare() would make (tailer/sigv4.py), at a
                # fraction of the CPU; the exchange raises botocore's exceptions for its failures.
                headers = self._signer.headers(frozen.access_key, frozen.secret_key, frozen.token, target, body)
                return self.http.send((headers, body))
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
        install_deadline(_pooled_session(self.client))
        if isinstance(self.http, BotocoreExchange):
            self.http = BotocoreExchange(_pooled_session(self.client), self.url)
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
        self.http.close()
        self.client.close()

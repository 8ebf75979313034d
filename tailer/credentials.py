"""Credentials for a destination in another account: AssumeRole, refreshed by botocore.

``--role-arn`` (with ``--external-id``, ``--role-session-name``,
``--sts-endpoint-url``) makes the sink sign with a role's temporary credentials,
as Kinesis Agent, Fluent Bit and Vector do for cross-account streams. The
source credentials are boto3's standard chain as before (IRSA's web identity,
an instance role, env): they sign only the AssumeRole calls. Without
``--role-arn`` nothing changes.

Rotated credentials (a rewritten shared credentials file, new environment of a
credential process, a key deleted and replaced): boto3 resolves the chain once
per session and would sign with the old key forever. When the service refuses a
call with one of :data:`STALE_CREDENTIAL_CODES`, :class:`CredentialRenewal`
builds a new session (the whole chain resolved again, the role assumed again)
and the call is sent once more with it — at most once per backoff (1 s doubling
to 60 s while refusals go on; back to 1 s after a success), so a key that is
simply wrong costs one extra call now and then, not one per call.

The refreshing is botocore's own: :class:`botocore.credentials.AssumeRoleCredentialFetcher`
(cached, re-fetched when close to expiry) behind :class:`DeferredRefreshableCredentials`
(nothing is fetched until the first call; then the first call within
``ADVISORY_REFRESH_SECONDS`` of expiry refreshes them while the others keep
signing with the current ones, and within ``MANDATORY_REFRESH_SECONDS`` every
call waits for fresh ones). A failed refresh is a
``CredentialsUnavailable`` for the call that needed it (retried with backoff,
nothing dropped; tailer/errors.py). The margins are botocore's defaults;
tests pass shorter ones to watch credentials expire within seconds
(tests/integration/test_assume_role.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    DeferredRefreshableCredentials,
)

from .deadline import install as install_deadline

__all__ = ["ADVISORY_REFRESH_SECONDS", "MANDATORY_REFRESH_SECONDS", "STALE_CREDENTIAL_CODES", "CredentialRenewal",
           "RoleSettings", "assume_role_session"]

log = logging.getLogger(__name__)

# botocore's own margins (RefreshableCredentials, CachedCredentialFetcher): refresh 15 min before expiry,
# and every caller waits for fresh credentials from 10 min before.
ADVISORY_REFRESH_SECONDS = 15 * 60
MANDATORY_REFRESH_SECONDS = 10 * 60
DEFAULT_SESSION_NAME = "spoolship"


@dataclass(frozen=True)
class RoleSettings:
    role_arn: str
    external_id: str | None = None
    session_name: str = DEFAULT_SESSION_NAME
    sts_endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if not self.role_arn.startswith("arn:"):
            raise ValueError(f"--role-arn {self.role_arn!r} is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        if not 2 <= len(self.session_name) <= 64:
            raise ValueError("--role-session-name must be 2 to 64 characters")
        if self.external_id is not None and not 2 <= len(self.external_id) <= 1224:
            raise ValueError("--external-id must be 2 to 1,224 characters")


class _RoleCredentials(DeferredRefreshableCredentials):
    """botocore's deferred refreshing credentials, with the refresh margins given.

    RefreshableCredentials takes the margins as ``advisory_timeout`` / ``mandatory_timeout``;
    its deferred subclass does not pass them on, so they are set here on the same attributes.
    tests/unit/test_credentials.py fails loudly if a botocore upgrade renames them.
    """

    def __init__(self, refresh_using: Callable[[], dict], advisory_seconds: float, mandatory_seconds: float) -> None:
        super().__init__(refresh_using=refresh_using, method="assume-role")
        self._advisory_refresh_timeout = advisory_seconds
        self._mandatory_refresh_timeout = mandatory_seconds


class _AssumedRoleProvider(CredentialProvider):
    METHOD = "spoolship-assume-role"
    CANONICAL_NAME = "spoolship-assume-role"

    def __init__(self, credentials: _RoleCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> _RoleCredentials:
        return self._credentials


def assume_role_session(source: boto3.Session, role: RoleSettings, region: str | None, *,
                        advisory_seconds: float = ADVISORY_REFRESH_SECONDS,
                        mandatory_seconds: float = MANDATORY_REFRESH_SECONDS) -> boto3.Session:
    """A session whose credentials are ``role``'s, assumed with ``source``'s credentials and refreshed."""
    if not 0 < mandatory_seconds <= advisory_seconds:
        raise ValueError("refresh margins: 0 < mandatory <= advisory")
    region = region or source.region_name
    sts_config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10)

    def sts_client(service: str, **credentials: str):
        client = source.client(service, region_name=region, endpoint_url=role.sts_endpoint_url, config=sts_config,
                               **credentials)
        # A trickling STS never trips the read timeout: its calls run under the caller's call deadline.
        install_deadline(client._endpoint.http_session)
        return client

    extra = {"RoleSessionName": role.session_name}
    if role.external_id is not None:
        extra["ExternalId"] = role.external_id
    source_credentials = source.get_credentials()
    if source_credentials is None:
        raise ValueError("--role-arn needs source credentials to assume the role with (boto3's chain found none)")
    fetcher = AssumeRoleCredentialFetcher(sts_client, source_credentials, role.role_arn, extra_args=extra,
                                          expiry_window_seconds=advisory_seconds)
    credentials = _RoleCredentials(fetcher.fetch_credentials, advisory_seconds, mandatory_seconds)
    core = botocore.session.Session()
    core.get_component("credential_provider").insert_before("env", _AssumedRoleProvider(credentials))
    return boto3.Session(botocore_session=core, region_name=region)


# What AWS answers when the credentials themselves are stale or unknown (not: denied by a policy).
STALE_CREDENTIAL_CODES = frozenset({
    "ExpiredToken", "ExpiredTokenException", "UnrecognizedClient", "UnrecognizedClientException",
    "InvalidClientTokenId", "SignatureDoesNotMatch", "InvalidSignatureException", "InvalidAccessKeyId",
})
RENEW_FIRST_SECONDS = 1.0
RENEW_MAX_SECONDS = 60.0


class CredentialRenewal:
    """When to resolve the credential chain again, and doing it. Thread-safe."""

    def __init__(self, new_session: Callable[[], boto3.Session], clock: Callable[[], float] = time.monotonic) -> None:
        self._new_session = new_session
        self._clock = clock
        self._lock = threading.Lock()
        self._backoff = RENEW_FIRST_SECONDS
        self._not_before = float("-inf")

    def renew(self, code: str) -> boto3.Session | None:
        """A new session if ``code`` says the credentials are stale and no renewal is backing off."""
        if code not in STALE_CREDENTIAL_CODES:
            return None
        with self._lock:
            now = self._clock()
            if now < self._not_before:
                return None
            self._not_before = now + self._backoff
            self._backoff = min(RENEW_MAX_SECONDS, self._backoff * 2)
        try:
            session = self._new_session()
        except Exception as exc:  # the chain itself fails now: the call's error stands, tried again later
            log.warning("credential chain could not be resolved again", extra={"error": str(exc)})
            return None
        log.warning("credentials refused as stale; credential chain resolved again", extra={"code": code})
        return session

    def succeeded(self) -> None:
        if self._backoff != RENEW_FIRST_SECONDS:
            with self._lock:
                self._backoff = RENEW_FIRST_SECONDS

"""SigV4 for the one hot call: a POST of a JSON body to a fixed endpoint, signed in a few microseconds.

botocore's ``SigV4Auth`` is generic (any method, URL, query and header set) and
re-derives everything per request: it parses the URL, builds case-insensitive
header maps, sorts them twice, and runs five HMACs to derive the signing key.
Under 500-record PutRecords calls that is ~150 µs of Python per call on top of
the body's SHA-256 (docs/performance.md). Here what never changes for an
endpoint (canonical URI, query, host, the signed-header list) is built once, the
signing key once per day, region and secret, and a call is the body's SHA-256,
one SHA-256 of the canonical request and one HMAC.

The output is byte-for-byte what botocore's ``AWSRequest`` + ``SigV4Auth.add_auth``
+ ``prepare()`` send (the same headers, the same values):
tests/unit/test_sigv4.py checks it with hypothesis over credentials, tokens,
regions, endpoint URLs, targets, bodies and instants. Thread-safe: the cached key
is one tuple, replaced whole.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlsplit

from botocore.utils import normalize_url_path

__all__ = ["Signer", "canonical_host"]

_ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_sha256 = hashlib.sha256


def canonical_host(url: str) -> str:
    """The Host header botocore signs: lowercase, no userinfo, no default port, IPv6 in brackets."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)


def _trim(value: str) -> str:
    return " ".join(value.split())


class Signer:
    """Signs POSTs of ``content_type`` bodies to ``url`` for ``service`` in ``region``."""

    def __init__(self, url: str, service: str, region: str, content_type: str) -> None:
        parts = urlsplit(url)
        self.service = service
        self.region = region
        self._content_type = content_type
        self._uri = quote(normalize_url_path(parts.path), safe="/~")
        self._query = _canonical_query(parts.query)
        self._host = canonical_host(url)
        self._key: tuple[str, str, bytes] = ("", "", b"")  # (date, secret, signing key)

    def headers(self, access_key: str, secret_key: str, token: str | None, target: str, body: bytes,
                now: float | None = None) -> dict[str, str]:
        """The headers of the signed request: Content-Type, X-Amz-Target, X-Amz-Date, the token if any,
        Authorization and Content-Length."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        date = stamp[:8]
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        canonical = [f"POST\n{self._uri}\n{self._query}\ncontent-type:{_trim(self._content_type)}\n"
                     f"host:{self._host}\nx-amz-date:{stamp}\n"]
        if token:
            canonical.append(f"x-amz-security-token:{_trim(token)}\n")
            signed = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
        else:
            signed = "content-type;host;x-amz-date;x-amz-target"
        canonical.append(f"x-amz-target:{_trim(target)}\n\n{signed}\n{_sha256(body).hexdigest()}")
        to_sign = f"{_ALGORITHM}\n{stamp}\n{scope}\n{_sha256(''.join(canonical).encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(date, secret_key), to_sign.encode(), _sha256).hexdigest()
        headers = {"Content-Type": self._content_type, "X-Amz-Target": target, "X-Amz-Date": stamp}
        if token:
            headers["X-Amz-Security-Token"] = token
        headers["Authorization"] = (f"{_ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, "
                                    f"Signature={signature}")
        headers["Content-Length"] = str(len(body))
        return headers

    def _signing_key(self, date: str, secret_key: str) -> bytes:
        cached_date, cached_secret, key = self._key
        if cached_date == date and cached_secret == secret_key:
            return key
        key = f"AWS4{secret_key}".encode()
        for part in (date, self.region, self.service, "aws4_request"):
            key = hmac.new(key, part.encode(), _sha256).digest()
        self._key = (date, secret_key, key)
        return key

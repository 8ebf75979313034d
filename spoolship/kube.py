"""The few Kubernetes API calls the rescue needs, over HTTPS with the standard library only.

Why not the official client: it pulls in a large dependency tree for five calls (get, list, create,
patch, delete) made once a minute. This speaks the API's JSON over ``http.client`` with the pod's service-account
token and the cluster CA, and translates every failure into one small hierarchy in one place
(``_request``)::

    KubeError                 anything that went wrong talking to the API
    ├── KubeUnreachable       no answer: connection refused/reset, TLS failure, timeout
    └── KubeApiError          an answer with an error status (``status``, ``reason``, ``message``)
        ├── NotFound          404
        └── Conflict          409 (AlreadyExists: someone created it first)

Thread-safety: one ``KubeClient`` per thread (each call opens its own connection).
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVICE_ACCOUNT_DIR", "Conflict", "KubeApiError", "KubeClient", "KubeError", "KubeUnreachable",
           "NotFound", "in_cluster_client"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_TIMEOUT_SECONDS = 30.0
LIST_PAGE_SIZE = 500


class KubeError(Exception):
    """Talking to the Kubernetes API failed."""


class KubeUnreachable(KubeError):
    """The API did not answer (connection, TLS or timeout)."""


class KubeApiError(KubeError):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class NotFound(KubeApiError):
    pass


class Conflict(KubeApiError):
    pass


ERRORS_BY_STATUS = {404: NotFound, 409: Conflict}


@dataclass
class KubeClient:
    """``base_url`` like ``https://10.0.0.1:443``; ``token_file`` is re-read per call (tokens rotate)."""

    base_url: str
    token_file: Path | None
    ssl_context: ssl.SSLContext | None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def get(self, path: str) -> dict:
        return self._request("GET", path)

    def list(self, path: str, label_selector: str | None = None) -> list[dict]:
        """Every item of a collection, following ``metadata.continue`` across pages."""
        items, token = [], None
        while True:
            query = {"limit": str(LIST_PAGE_SIZE)}
            if label_selector:
                query["labelSelector"] = label_selector
            if token:
                query["continue"] = token
            page = self._request("GET", f"{path}?{urllib.parse.urlencode(query)}")
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def create(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def patch(self, path: str, body: dict) -> dict:
        """A JSON merge patch (RFC 7386): keys set to None are removed."""
        return self._request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, propagation: str = "Background") -> dict:
        return self._request("DELETE", path, {"kind": "DeleteOptions", "apiVersion": "v1",
                                              "propagationPolicy": propagation})

    def _request(self, method: str, path: str, body: dict | None = None,
                 content_type: str = "application/json") -> dict:
        url = urllib.parse.urlsplit(self.base_url)
        headers = {"Accept": "application/json", "User-Agent": "spoolship-rescue"}
        if self.token_file is not None:
            try:
                headers["Authorization"] = f"Bearer {self.token_file.read_text().strip()}"
            except OSError as exc:
                raise KubeError(f"cannot read the service-account token {self.token_file}: {exc}") from None
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=self.timeout_seconds,
                                               context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=self.timeout_seconds)
        try:
            conn.request(method, url.path.rstrip("/") + path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError and socket.timeout are OSErrors
            raise KubeUnreachable(f"{method} {path}: {exc}") from None
        finally:
            conn.close()
        return _decode(method, path, response.status, data)


def _decode(method: str, path: str, status: int, data: bytes) -> dict:
    try:
        decoded = json.loads(data) if data else {}
    except ValueError:
        decoded = None
    if 200 <= status < 300 and isinstance(decoded, dict):
        return decoded
    if 200 <= status < 300:
        raise KubeApiError(status, "BadResponse", f"{method} {path}: the answer is not a JSON object")
    details = decoded if isinstance(decoded, dict) else {}
    reason = str(details.get("reason") or http.client.responses.get(status, "Error"))
    message = str(details.get("message") or data[:200].decode("utf-8", "replace"))
    raise ERRORS_BY_STATUS.get(status, KubeApiError)(status, reason, f"{method} {path}: {message}")


def in_cluster_client(host: str, port: str, service_account_dir: Path = SERVICE_ACCOUNT_DIR,
                      timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> KubeClient:
    """The client a pod gets from KUBERNETES_SERVICE_HOST/PORT and its mounted service account."""
    ca = service_account_dir / "ca.crt"
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise KubeError(f"cannot load the cluster CA {ca}: {exc}") from None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 service address
    return KubeClient(f"https://{host}:{port}", service_account_dir / "token", context, timeout_seconds)

"""CORS for browser clients posting events from other origins.

With no ``--cors-origin`` the receiver sends no CORS headers and does not look at
``Origin`` (server-to-server use). With origins configured, a preflight from an
allowed origin is answered 204 with the allowed methods and headers, and any
request carrying a refused ``Origin`` gets 403 — also simple ``text/plain``
posts from ``sendBeacon``, which browsers send without a preflight.

Error responses look origins up with :meth:`CorsPolicy.allowed_headers`, which
never raises: an error handler that raised again would turn any refused-origin
request to a wrong route or method into a 500 (a past bug).
"""

from __future__ import annotations

from .errors import OriginRefused, quote_client_value

__all__ = ["CorsPolicy"]

ALLOWED_METHODS = "POST, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Content-Encoding, Authorization, X-Api-Key, X-Spoolship-Sync"
# Response headers a page may read: whether a sync request was honoured, and when to retry a 503.
EXPOSED_HEADERS = "X-Spoolship-Sync, Retry-After"
PREFLIGHT_MAX_AGE_SECONDS = 86400


class CorsPolicy:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.enabled = bool(origins)
        self.any_origin = "*" in origins
        self._origins = {o.rstrip("/").lower() for o in origins if o != "*"}

    def allowed_headers(self, origin: str | None) -> dict[str, str]:
        """CORS headers for a response to ``origin``: empty when CORS is off or the origin refused."""
        if not self.enabled or origin is None:
            return {}
        if self.any_origin:
            return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": EXPOSED_HEADERS}
        if origin.rstrip("/").lower() in self._origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                    "Access-Control-Expose-Headers": EXPOSED_HEADERS}
        return {}

    def headers_for(self, origin: str | None) -> dict[str, str]:
        """CORS headers for a response to ``origin``; raises OriginRefused for a refused one."""
        headers = self.allowed_headers(origin)
        if headers or not self.enabled or origin is None:
            return headers
        raise OriginRefused(f"origin {quote_client_value(origin)} is not allowed to post events here")

    def preflight_headers(self, origin: str | None) -> dict[str, str]:
        headers = self.headers_for(origin)
        if origin is None or not self.enabled:
            raise OriginRefused("CORS is not enabled on this receiver (see --cors-origin)")
        headers.update({
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
        })
        return headers

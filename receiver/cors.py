"""CORS for browser clients posting events from other origins.

With no ``--cors-origin`` the receiver sends no CORS headers and does not look at
``Origin`` (server-to-server use). With origins configured, a preflight from an
allowed origin is answered 204 with the allowed methods and headers, and any
request carrying a refused ``Origin`` gets 403 — also simple ``text/plain``
posts from ``sendBeacon``, which browsers send without a preflight.
"""

from __future__ import annotations

from .errors import OriginRefused

__all__ = ["CorsPolicy"]

ALLOWED_METHODS = "POST, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Content-Encoding, Authorization, X-Api-Key, X-Spoolship-Sync"
PREFLIGHT_MAX_AGE_SECONDS = 86400


class CorsPolicy:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.enabled = bool(origins)
        self.any_origin = "*" in origins
        self._origins = {o.rstrip("/").lower() for o in origins if o != "*"}

    def headers_for(self, origin: str | None) -> dict[str, str]:
        """CORS headers for a response to ``origin``; raises OriginRefused for a refused one."""
        if not self.enabled or origin is None:
            return {}
        if self.any_origin:
            return {"Access-Control-Allow-Origin": "*"}
        if origin.rstrip("/").lower() in self._origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        raise OriginRefused(f"origin {origin!r} is not allowed to post events here")

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

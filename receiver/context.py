"""Request context stamped into events, opt-in: the client's IP address and its User-Agent.

Off unless a field name is given (``--client-ip-field``, ``--user-agent-field``).
Both are **personal data** under the GDPR and similar laws (an IP address
identifies a household or a person, a user agent helps fingerprint one):
enable them only with a purpose and a retention period for them downstream
(docs/http-api.md, "Request context").

The client IP is the connection's peer address, unless the peer is one of the
``--trusted-proxies`` (CIDRs: the ingress, a load balancer). Then
``X-Forwarded-For`` is read right to left, skipping addresses of trusted proxies
too, and the first one that is not trusted is the client (what nginx's
``real_ip_recursive`` does): a client can put anything at the left of that
header, so nothing left of the first untrusted hop is believed. A hop that is not
an IP address ends the walk at the hop to its right. Without trusted proxies the
header is ignored entirely.

A value the client sent under one of these field names is overwritten: an event
cannot claim another address. Thread-safe (immutable).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["MAX_USER_AGENT_CHARS", "RequestContext", "parse_networks"]

MAX_USER_AGENT_CHARS = 512  # longer ones are cut: a header is up to 32 KiB, and it is copied into every event
_MAX_FORWARDED_HOPS = 32  # read at most this many hops from the right

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: tuple[str, ...] | list[str]) -> tuple[Network, ...]:
    """``--trusted-proxies`` values (``10.0.0.0/8``, ``192.168.1.7``, ``fd00::/8``; comma-separated allowed)."""
    networks = []
    for item in cidrs:
        for text in str(item).split(","):
            text = text.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"--trusted-proxies {text!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class RequestContext:
    client_ip_field: str | None = None
    user_agent_field: str | None = None
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.client_ip_field is not None or self.user_agent_field is not None

    def fields(self, environ: dict) -> dict[str, str | None]:
        """The fields to stamp into each event of this request."""
        out: dict[str, str | None] = {}
        if self.client_ip_field is not None:
            out[self.client_ip_field] = self.client_ip(environ.get("REMOTE_ADDR"),
                                                       environ.get("HTTP_X_FORWARDED_FOR"))
        if self.user_agent_field is not None:
            agent = environ.get("HTTP_USER_AGENT")
            out[self.user_agent_field] = agent[:MAX_USER_AGENT_CHARS] if agent is not None else None
        return out

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        address = _address(peer) if peer else None
        if address is None:
            return None
        if not forwarded_for or not self._trusted(address):
            return str(address)
        hops = [hop for hop in forwarded_for.split(",")[-_MAX_FORWARDED_HOPS:]]
        for hop in reversed(hops):
            hop_address = _address(hop)
            if hop_address is None:
                break  # garbage: the last good hop (to its right) is as far as anything is known
            address = hop_address
            if not self._trusted(hop_address):
                break
        return str(address)

    def _trusted(self, address) -> bool:
        return any(address.version == network.version and address in network for network in self.trusted_proxies)

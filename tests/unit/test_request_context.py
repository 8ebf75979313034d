"""The client IP: X-Forwarded-For believed only from trusted proxies, and only right of the first untrusted hop."""

from __future__ import annotations

import pytest

from receiver.context import MAX_USER_AGENT_CHARS, RequestContext, parse_networks

TRUSTED = RequestContext("ip", "ua", parse_networks(["10.0.0.0/8", "192.168.1.7", "fd00::/8"]))
NOBODY = RequestContext("ip", None, ())

CASES = [  # (context, peer, X-Forwarded-For, client ip)
    (NOBODY, "203.0.113.9", None, "203.0.113.9"),
    (NOBODY, "203.0.113.9", "1.2.3.4", "203.0.113.9"),  # no trusted proxy: the header is ignored
    (TRUSTED, "203.0.113.9", "1.2.3.4", "203.0.113.9"),  # the peer is not a proxy we trust
    (TRUSTED, "10.1.2.3", "1.2.3.4", "1.2.3.4"),
    (TRUSTED, "10.1.2.3", "1.2.3.4, 10.9.9.9", "1.2.3.4"),  # trusted hops are skipped
    (TRUSTED, "10.1.2.3", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # a client's own entries, left of it, are not believed
    (TRUSTED, "10.1.2.3", "10.4.4.4, 192.168.1.7", "10.4.4.4"),  # every hop trusted: the leftmost
    (TRUSTED, "10.1.2.3", "garbage, 1.2.3.4", "1.2.3.4"),
    (TRUSTED, "10.1.2.3", "1.2.3.4, garbage", "10.1.2.3"),  # garbage ends the walk at the hop to its right
    (TRUSTED, "10.1.2.3", "", "10.1.2.3"),
    (TRUSTED, "10.1.2.3", "203.0.113.7:51234", "203.0.113.7"),
    (TRUSTED, "10.1.2.3", "[2001:db8::1]:443", "2001:db8::1"),
    (TRUSTED, "fd00::5", "2001:db8::2", "2001:db8::2"),
    (TRUSTED, "::ffff:10.1.2.3", "1.2.3.4", "1.2.3.4"),  # an IPv4-mapped peer is its IPv4 address
    (TRUSTED, "10.1.2.3", "1.2.3.4, 192.168.1.8", "192.168.1.8"),  # a /32 trusts that address only
    (TRUSTED, None, "1.2.3.4", None),
]


@pytest.mark.parametrize(("context", "peer", "forwarded", "client"), CASES, ids=[f"{c[1]}|{c[2]}" for c in CASES])
def test_the_client_ip(context, peer, forwarded, client):
    assert context.client_ip(peer, forwarded) == client


def test_a_long_chain_is_read_from_the_right_only_so_far():
    chain = ", ".join(["10.0.0.1"] * 1000)
    assert TRUSTED.client_ip("10.1.2.3", "9.9.9.9, " + chain) == "10.0.0.1"


def test_fields_are_only_those_asked_for_and_the_user_agent_is_clipped():
    environ = {"REMOTE_ADDR": "203.0.113.9", "HTTP_USER_AGENT": "x" * 10_000}
    fields = TRUSTED.fields(environ)
    assert fields == {"ip": "203.0.113.9", "ua": "x" * MAX_USER_AGENT_CHARS}
    assert RequestContext(None, "ua").fields({}) == {"ua": None}
    assert not RequestContext().enabled


def test_a_bad_cidr_is_refused():
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks(["10.0.0.0/33"])
    assert len(parse_networks(["10.0.0.0/8,172.16.0.0/12", " "])) == 2

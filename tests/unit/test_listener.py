"""The waitress settings of receiver/listener.py that are computed, not constant."""

from __future__ import annotations

import resource

import pytest

from receiver import listener


@pytest.mark.parametrize(("soft", "expected"), [
    (resource.RLIM_INFINITY, listener.CONNECTION_LIMIT),
    (1_048_576, listener.CONNECTION_LIMIT),
    (1024, 1024 - listener.RESERVED_DESCRIPTORS),
    (100, listener.MIN_CONNECTION_LIMIT),
])
def test_the_connection_limit_fits_the_descriptor_limit(monkeypatch, soft, expected):
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (soft, resource.RLIM_INFINITY))
    assert listener.connection_limit() == expected


def test_the_connection_limit_is_far_above_waitress_default():
    # waitress's 100 (its own listener included) is what 100 slow clients filled.
    assert listener.CONNECTION_LIMIT >= 1000

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


def test_clients_that_leave_before_their_answer_are_counted_not_logged_each_time(caplog):
    """waitress logs "Client disconnected while serving <path>" at info for every one (review, hardening)."""
    import logging

    from receiver.connection import guarded_channel_class
    from receiver.guard import GuardSettings

    channel_class = guarded_channel_class(GuardSettings(max_body_bytes=1000, read_timeout_seconds=1.0))
    with caplog.at_level(logging.INFO):
        for i in range(500):
            channel_class.logger.info(f"Client disconnected while serving /v1/events?n={i}")  # as waitress does
        channel_class.logger.warning("Socket error")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if m.startswith("Client disconnected")]
    assert messages.count("clients disconnected before their answer") == 1, "one line per interval, with a count"
    assert "Socket error" in messages, "everything else waitress logs still is"

"""Fixtures shared by the integration tests of the receiver."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ReceiverConfig
from tests.helpers import LiveReceiver


@pytest.fixture
def live(spool_dir: Path):
    """``live(**settings)``: a receiver on a real socket in this process (no fsync, no free-disk floor by default)."""
    servers: list[LiveReceiver] = []

    def start(**overrides) -> LiveReceiver:
        settings = {"spool_dir": spool_dir, "min_free_bytes": 0, "fsync": "never", **overrides}
        servers.append(LiveReceiver(ReceiverConfig(**settings)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()

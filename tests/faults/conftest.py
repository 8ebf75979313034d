"""The fault suite prints one summary line per scenario at the end of the run."""

from __future__ import annotations

import pytest


@pytest.fixture
def kinesis(request):
    """kinesalite for volume when Node.js is here, else moto (and say so)."""
    from tests.servers.kinesis import Kinesalite

    if Kinesalite.available() is None:
        return request.getfixturevalue("kinesalite")
    return request.getfixturevalue("moto")

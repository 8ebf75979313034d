"""The power-cut disk (tests/fusefs) for the tests of this folder: one mount per session."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.fusefs import PowerCutDisk, fuse_missing

_NAMES = itertools.count()
SUMMARIES: list[str] = []  # one line per power-cut run, printed at the end of the session


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARIES:
        terminalreporter.section("power cuts: what each --fsync mode kept")
        for line in SUMMARIES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def disk(tmp_path_factory) -> PowerCutDisk:
    why = fuse_missing()
    if why:
        pytest.skip(f"power-cut tests skipped: {why}")
    mounted = PowerCutDisk(tmp_path_factory.mktemp("powercut")).mount()
    yield mounted
    mounted.unmount()


@pytest.fixture
def fresh(disk: PowerCutDisk, request) -> Path:
    """A new durable directory on the disk for this test; every fault rule is cleared after it."""
    name = f"t{next(_NAMES)}-{request.node.name[:40]}".replace("[", "_").replace("]", "_").replace("/", "_")
    yield disk.new_dir(name)
    disk.clear()

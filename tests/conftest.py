"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, new_writer_id

ROOT = Path(__file__).resolve().parent.parent
PROCS = Path(__file__).resolve().parent / "procs"

# Local Kinesis-API servers accept any credentials; never let a developer's real ones leak in.
for _name, _value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                      "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
    os.environ[_name] = _value
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _stop_what_the_test_left_running():
    """Servers in tests stop by themselves, also when a test fails half-way."""
    yield
    from tests.helpers import RUNNING

    while RUNNING:
        proc = RUNNING.pop()
        if proc.process.poll() is None:
            proc.kill()


@pytest.fixture(scope="session")
def moto():
    from tests.servers.kinesis import MotoServer

    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kinesalite():
    from tests.servers.kinesis import Kinesalite

    why_not = Kinesalite.available()
    if why_not:
        pytest.skip(f"kinesalite tests skipped: {why_not}")
    server = Kinesalite().start()
    yield server
    server.stop()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def make_writer(spool_dir: Path) -> Iterator:
    writers: list[SpoolWriter] = []

    def make(**overrides) -> SpoolWriter:
        settings = {
            "spool_dir": spool_dir,
            "writer_id": new_writer_id(len(writers)),
            "min_free_bytes": 0,
            "fsync": FsyncPolicy.NEVER,
        }
        settings.update(overrides)
        writer = SpoolWriter(WriterConfig(**settings))
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close()


def proc_cmd(script: str, *args: object) -> list[str]:
    """Command line for a helper process under tests/procs/."""
    return [sys.executable, str(PROCS / script), *map(str, args)]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def pytest_terminal_summary(terminalreporter) -> None:
    """One summary line per fault scenario (tests/faults)."""
    import sys

    harness = sys.modules.get("tests.faults.harness")
    if harness is not None and harness.SUMMARIES:
        terminalreporter.section("fault scenarios: every acknowledged event accounted for")
        for line in harness.SUMMARIES:
            terminalreporter.write_line(line)

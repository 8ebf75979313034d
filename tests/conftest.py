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

"""The README's first five minutes show exactly what `spoolship up` prints."""

from __future__ import annotations

import sys
from pathlib import Path

from spoolship.up import LocalPipeline, UpOptions

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_matches_the_up_banner(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["./.venv/bin/spoolship"])
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    pipeline = LocalPipeline(UpOptions(
        host="127.0.0.1", port=8080, kinesis_port=4567, stream="events", spool_dir=Path("spool"),
        endpoint_url=None, aws=False, region=None, shards=1, log_level="warning", drain_timeout_seconds=30))
    pipeline.endpoint_url = "http://127.0.0.1:4567"  # as when the embedded server runs on 4567
    pipeline.children["kinesis"] = None
    banner = [line.strip() for line in pipeline.banner().splitlines() if line.strip()]
    shown = [line for line in banner if line.startswith(("curl ", "receiver", "aws ", "routes "))
             or " peek " in line or " status " in line or " check " in line or "-> " in line]
    assert len(shown) >= 12, banner
    for line in shown:
        assert line in README, f"README does not show: {line}"
    assert "make run" in README and "make test" in README

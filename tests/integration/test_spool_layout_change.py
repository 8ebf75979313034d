"""A spool claim whose layout changed: the tailer ships what the old layout left, and never calls it drained
while a segment is left (routes review, finding 1).

Real `spoolship tail` processes against moto's Kinesis: segments at the spool root (what the single-route
StatefulSet writes, with its checkpoint) and in a renamed route's directory, after the pod switched to
`--config`. Before the fix the drain exited 0 with both left on the claim.
"""

from __future__ import annotations

import json
from collections import Counter

from spooler import CheckpointStore, list_segments
from spooler.layout import segment_dirs
from tests.helpers import Proc, write_segments

CONFIG = """
spool_dir = "{spool}"
[routing]
field = "type"
default = "events"
[routes.events]
destination = "main"
[routes.click-events]          # renamed from "clicks"
destination = "clicks"
values = ["click"]
[destinations.main]
type = "kinesis"
stream = "{main}"
endpoint_url = "{endpoint}"
[destinations.clicks]
type = "kinesis"
stream = "{clicks}"
endpoint_url = "{endpoint}"
"""


def _config(tmp_path, spool_dir, moto):
    main, clicks = moto.create_stream(shards=1), moto.create_stream(shards=1)
    path = tmp_path / "routes.toml"
    path.write_text(CONFIG.format(spool=spool_dir, main=main, clicks=clicks, endpoint=moto.endpoint))
    return path, main, clicks


def _run(*args) -> tuple[int, Proc]:
    tailer = Proc("tail", *args, "--linger", "0.05", "--poll-interval", "0.5", "--region", "us-east-1")
    code = tailer.process.wait(120)
    tailer._reader.join(5)
    return code, tailer


def test_a_drain_ships_root_and_old_route_segments_to_the_default_destination(moto, spool_dir, tmp_path):
    config, main, clicks = _config(tmp_path, spool_dir, moto)
    root_lines = write_segments(spool_dir, "old-pod_w0", 400, segment_bytes=16 * 1024)
    old_route_lines = write_segments(spool_dir / "clicks", "old-pod_w1", 300, segment_bytes=16 * 1024)
    new_lines = write_segments(spool_dir / "events", "new-pod_w0", 200)
    first = min(s.segment_id for s in list_segments(spool_dir))
    covered = root_lines[:20]
    with CheckpointStore(spool_dir) as store:  # the single-route tailer shipped this much
        store.save({first: len(b"".join(covered))})

    code, tailer = _run("--config", str(config), "--exit-when-empty")
    assert code == 0, "".join(tailer.raw[-30:])
    assert segment_dirs(spool_dir) == [], "nothing left anywhere on the claim"
    warned = [r for r in tailer.logs if r.get("event", "").startswith("segments outside every configured spool")]
    assert warned and "clicks" in warned[0]["strays"] and "(the spool root)" in warned[0]["strays"]
    delivered = Counter(moto.read_lines(main))
    expected = root_lines[len(covered):] + old_route_lines + new_lines
    assert all(delivered[line] == 1 for line in expected), "every stray line once, at the default destination"
    assert not any(delivered[line] for line in covered), "the old layout's checkpoint is honoured"
    assert sum(delivered.values()) == len(expected)
    assert moto.read_lines(clicks) == []


def test_exit_when_empty_is_not_drained_while_another_routes_spool_holds_segments(moto, spool_dir, tmp_path):
    config, _, _ = _config(tmp_path, spool_dir, moto)
    write_segments(spool_dir / "events", "w", 50)
    code, tailer = _run("--config", str(config), "--route", "click-events", "--exit-when-empty")
    assert code == 1, "".join(tailer.raw[-30:])
    [left] = [r for r in tailer.logs if r.get("event", "").startswith("segments left on the claim")]
    assert str(spool_dir / "events") in left["left"]
    assert segment_dirs(spool_dir), "nothing shipped by a loop that does not own it"


def test_without_config_old_route_directories_are_shipped_too(moto, spool_dir, tmp_path):
    stream = moto.create_stream(shards=1)
    lines = write_segments(spool_dir / "events", "routed_w0", 100) + write_segments(spool_dir / "bad", "b", 10)
    code, tailer = _run("--spool-dir", str(spool_dir), "--stream", stream, "--endpoint-url", moto.endpoint,
                        "--exit-when-empty")
    assert code == 0, "".join(tailer.raw[-30:])
    assert segment_dirs(spool_dir) == []
    assert sorted(moto.read_lines(stream)) == sorted(lines)
    assert json.dumps(tailer.logs)  # logs are JSON objects

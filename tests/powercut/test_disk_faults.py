"""Every errno on every spool operation, through the power-cut disk.

Receiver side, with a real waitress server in this process on a spool on the
disk (``--fsync always``, some requests ``?sync=1``, tiny segments so that
creates, renames and seals happen during the fault): while a fault is armed
every answer is a 201 or a 503 with ``Retry-After`` — never a 500; a 503 that
says ``"written": "none"`` left nothing in the spool; once the fault clears the
receiver accepts again and ``/readyz`` turns ready by itself; and after a power
cut at the end every 201'd event is on the disk.

Tailer side, with the real shipper loop (``Shipper.run``) and an in-memory
stream: faults on checkpoint writes, dead-letter writes, unlinks, orphan
seals and directory fsyncs. The tailer must keep running through the fault
and, once it clears, ship everything and dead-letter the torn tail.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
import requests

from receiver.config import ReceiverConfig
from spooler import DEAD_LETTER_DIR, FsyncPolicy, SpoolWriter, WriterConfig, list_segments
from tailer import Shipper, TailerConfig
from tests.helpers import LiveReceiver, write_sealed
from tests.powercut.machine import MemorySink, complete_lines

ERRNOS = ["ENOSPC", "EIO", "EFBIG", "EDQUOT", "EROFS"]
# (name, operation, path pattern relative to the spool, extra rule options)
RECEIVER_OPERATIONS = [
    ("segment create", "create", "/.creating-*", {}),
    ("segment write", "write", "/*.active", {}),
    ("segment fsync", "fsync", "/*.active", {}),
    ("new segment rename", "rename", "/.creating-*", {}),
    ("seal rename", "rename", "/*.ndjson", {}),
    ("spool dir fsync", "fsyncdir", "", {}),
    ("capacity scan", "readdir", "", {}),
    ("free space check", "statfs", "", {}),
    ("segment close", "flush", "/*.ndjson", {}),
]
RECEIVER_CASES = [(name, op, path, {"errno": err}) for name, op, path, _ in RECEIVER_OPERATIONS for err in ERRNOS]
RECEIVER_CASES += [("segment write", "write", "/*.active", {"short": True})]
_IDS = itertools.count()


def post(url: str, count: int, sync: bool) -> tuple[requests.Response, list[str]]:
    ids = [f"e{next(_IDS)}" for _ in range(count)]
    body = [{"_id": i, "pad": "x" * 80} for i in ids]
    response = requests.post(url + "/v1/events" + ("?sync=1" if sync else ""), json=body if count > 1 else body[0],
                             timeout=30)
    return response, ids


def wait_until(predicate, timeout: float = 15.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{message} not reached within {timeout}s"
        time.sleep(0.02)


@pytest.mark.parametrize(("name", "op", "path", "fault"), RECEIVER_CASES,
                         ids=[f"{c[0]}-{c[3].get('errno', 'short')}" for c in RECEIVER_CASES])
def test_receiver_answers_503_never_500_and_recovers_by_itself(disk, fresh, name, op, path, fault):
    spool = disk.new_dir(f"{fresh.name}-spool")
    server = LiveReceiver(ReceiverConfig(spool_dir=spool, fsync=FsyncPolicy.ALWAYS, segment_bytes=1500,
                                         segment_age_seconds=0.2, min_free_bytes=0))
    created, refused_ids = [], []
    try:
        for _ in range(3):
            response, ids = post(server.url, 2, sync=False)
            assert response.status_code == 201
            created += ids
        rule = disk.inject(op, disk.rel(spool) + path, **fault)
        statuses = set()
        deadline = time.monotonic() + 10
        while disk.fired(rule) < 3 and time.monotonic() < deadline or len(statuses) < 1:
            response, ids = post(server.url, 1 + len(created) % 3, sync=len(created) % 2 == 0)
            statuses.add(response.status_code)
            assert response.status_code in (201, 503), f"{name}: {response.status_code} {response.text}"
            if response.status_code == 201:
                created += ids
            else:
                assert int(response.headers["Retry-After"]) >= 1
                written = response.json()["written"]
                assert written in ("none", "unknown"), response.text
                if written == "none":
                    refused_ids += ids
            time.sleep(0.01)
        assert disk.fired(rule) >= 1, f"the {name} fault never fired"
        disk.clear(rule)
        # Recovers by itself: the next requests are accepted and readiness comes back.
        wait_until(lambda: post(server.url, 1, sync=True)[0].status_code == 201, message="a 201 again")
        response, ids = post(server.url, 2, sync=True)
        assert response.status_code == 201
        created += ids
        wait_until(lambda: requests.get(server.url + "/readyz", timeout=10).status_code == 200,
                   message="ready again")
        present = {json.loads(line)["_id"] for line in complete_lines(spool)}
        assert not present & set(refused_ids), "a 503 that said nothing was written left events behind"
        assert set(created) <= present
    finally:
        server.close()
    after = disk.cut(spool)
    durable = {json.loads(line)["_id"] for line in complete_lines(after)}
    assert set(created) <= durable, f"{len(set(created) - durable)} 201'd events not on the disk after a cut"


# -- the tailer side ---------------------------------------------------------------------------------------------

TAILER_OPERATIONS = [
    ("checkpoint create", "create", "/checkpoint.json.tmp"),
    ("checkpoint write", "write", "/checkpoint.json.tmp"),
    ("checkpoint fsync", "fsync", "/checkpoint.json.tmp"),
    ("checkpoint rename", "rename", "/checkpoint.json*"),
    ("spool dir fsync", "fsyncdir", ""),
    ("segment unlink", "unlink", "/*.ndjson"),
    ("orphan seal rename", "rename", "/orphan-*"),
    ("segment open", "open", "/crashed-*"),
    ("dead-letter create", "create", f"/{DEAD_LETTER_DIR}/*"),
    ("dead-letter write", "write", f"/{DEAD_LETTER_DIR}/*"),
    ("dead-letter fsync", "fsync", f"/{DEAD_LETTER_DIR}/*"),
    ("dead-letter rename", "rename", f"/{DEAD_LETTER_DIR}/*"),
    ("spool listing", "readdir", ""),
    ("orphan fsync", "fsync", "/orphan-*"),
    ("segment close", "flush", "/*.ndjson"),
]
TAILER_CASES = [(name, op, path, err) for name, op, path in TAILER_OPERATIONS for err in ("ENOSPC", "EIO")]


def _torn_segment(spool, writer_id: str, count: int, *, suffix: str = ".ndjson") -> list[bytes]:
    """A segment whose last line is torn (to be dead-lettered), as a crashed writer leaves it:
    sealed, or (``.active``, nobody holding its lock) orphaned."""
    lines = [b'{"_id":"%s-%d"}\n' % (writer_id.encode(), i) for i in range(count)]
    path, data = spool / f"{writer_id}-00000001{suffix}", b"".join(lines) + b'{"torn":'
    if suffix == ".ndjson":
        write_sealed(path, data)
    else:
        path.write_bytes(data)
    return lines


def _run(shipper: Shipper, stop: threading.Event, died: list) -> None:
    try:
        shipper.run(stop)
    except OSError as exc:  # reported by the test, not as an unhandled thread exception
        died.append(exc)


@pytest.mark.parametrize(("name", "op", "path", "err"), TAILER_CASES, ids=[f"{c[0]}-{c[3]}" for c in TAILER_CASES])
def test_tailer_keeps_running_through_a_disk_fault_and_ships_everything_after(disk, fresh, name, op, path, err):
    spool = disk.new_dir(f"{fresh.name}-spool")
    sink = MemorySink()
    expected = _torn_segment(spool, "crashed", 50) + _torn_segment(spool, "orphan", 30, suffix=".active")
    with SpoolWriter(WriterConfig(spool, "live", segment_bytes=800, min_free_bytes=0,
                                  fsync=FsyncPolicy.NEVER)) as writer:
        for i in range(60):
            line = b'{"_id":"live-%d"}\n' % i
            writer.append(line)
            expected.append(line)
    rule = disk.inject(op, disk.rel(spool) + path, errno=err)
    shipper = Shipper(TailerConfig(spool, "s", linger_seconds=0.005, poll_interval_seconds=0.05,
                                   checkpoint_interval_seconds=0.02, max_backoff_seconds=0.05), sink)
    stop, died = threading.Event(), []
    loop = threading.Thread(target=_run, args=(shipper, stop, died), daemon=True)
    loop.start()
    try:
        wait_until(lambda: disk.fired(rule) >= 1 or died, message=f"the {name} fault firing")
        time.sleep(0.3)
        assert not died, f"the tailer stopped on a {name} {err}: {died}"
        disk.clear(rule)
        wait_until(lambda: set(sink.accepted) == set(expected) or died, timeout=20, message="everything shipped")
        assert not died, f"the tailer stopped: {died}"
        wait_until(lambda: not [s for s in list_segments(spool, probe=False) if s.size], message="spool emptied")
        for torn in ("crashed", "orphan"):
            assert list((spool / DEAD_LETTER_DIR).glob(f"{torn}-00000001@*.bin")), f"{torn}'s torn tail kept"
    finally:
        stop.set()
        loop.join(30)
        disk.clear()


# -- readiness and the recovery probe ----------------------------------------------------------------------------

PROBE_SECONDS = 0.05
PROBE_STEPS = [("create", {}), ("write", {}), ("fsync", {}), ("flush", {}), ("unlink", {})]


def _readyz(server) -> int:
    return requests.get(server.url + "/readyz", timeout=10).status_code


def _never_ready_for(server, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert _readyz(server) == 503, "ready while the disk still fails"
        time.sleep(PROBE_SECONDS / 2)


@pytest.mark.parametrize("err", ["ENOSPC", "EIO", "EDQUOT"])
@pytest.mark.parametrize("op", ["write", "fsync"])
def test_readiness_stays_off_while_every_append_fails_and_returns_by_itself(disk, fresh, monkeypatch, op, err):
    """Review findings 5 and 6: with every fsync failing /readyz said 200 while every request got a 503;
    with every data write failing, the probe turned it back to 200 after creating an empty file."""
    import spooler.writer as writer_module

    monkeypatch.setattr(writer_module, "RECOVERY_PROBE_SECONDS", PROBE_SECONDS)
    spool = disk.new_dir(f"{fresh.name}-spool")
    server = LiveReceiver(ReceiverConfig(spool_dir=spool, fsync=FsyncPolicy.ALWAYS, min_free_bytes=0))
    try:
        assert post(server.url, 1, sync=False)[0].status_code == 201
        rule = disk.inject(op, disk.rel(spool) + "/*.active", errno=err)  # the probe file is named like one
        response, _ = post(server.url, 2, sync=False)
        assert response.status_code == 503, response.text
        _never_ready_for(server, 10 * PROBE_SECONDS)
        segments = len(list_segments(spool, probe=False))
        assert post(server.url, 1, sync=False)[0].status_code == 503
        _never_ready_for(server, 10 * PROBE_SECONDS)
        assert len(list_segments(spool, probe=False)) <= segments + 1, "a failing disk leaves a trail of segments"
        disk.clear(rule)
        wait_until(lambda: _readyz(server) == 200, message="ready again")
        assert post(server.url, 2, sync=True)[0].status_code == 201
    finally:
        server.close()


@pytest.mark.parametrize("err", ["ENOSPC", "EIO"])
@pytest.mark.parametrize(("op", "options"), PROBE_STEPS, ids=[s[0] for s in PROBE_STEPS])
def test_the_recovery_probe_keeps_the_receiver_unready_while_any_of_its_steps_fails(disk, fresh, monkeypatch, op,
                                                                                    options, err):
    """Every step of the probe (create, write, fdatasync, close, unlink of its page) is an operation of the
    errno table: while one fails the receiver stays unready, never a 500; once it works, ready again."""
    import spooler.writer as writer_module

    monkeypatch.setattr(writer_module, "RECOVERY_PROBE_SECONDS", PROBE_SECONDS)
    spool = disk.new_dir(f"{fresh.name}-spool")
    server = LiveReceiver(ReceiverConfig(spool_dir=spool, fsync=FsyncPolicy.ALWAYS, min_free_bytes=0))
    try:
        assert post(server.url, 1, sync=False)[0].status_code == 201
        probe = disk.inject(op, disk.rel(spool) + "/.probe-*", errno=err, **options)
        disk.inject("write", disk.rel(spool) + "/*-*.active", errno="EIO", times=1)  # one failed append
        response, _ = post(server.url, 1, sync=False)
        assert response.status_code == 503, response.text
        wait_until(lambda: disk.fired(probe) >= 2, message="the probe failing")
        _never_ready_for(server, 6 * PROBE_SECONDS)
        disk.clear(probe)
        wait_until(lambda: _readyz(server) == 200, message="ready again")
        assert post(server.url, 2, sync=True)[0].status_code == 201
    finally:
        server.close()

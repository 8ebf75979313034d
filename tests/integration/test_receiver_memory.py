"""A worker's memory stays bounded under a storm of body bombs, and valid traffic keeps getting 201s.

A real `spoolship receive` process (one worker, 8 waitress threads, default
limits) on a real socket. Several client threads send the worst shapes for
parse memory, plain and gzip, at once — ``[{},{},…]``, ``[[],[],…]``, many
keys, long strings, many small and huge numbers, deep nesting, NDJSON of empty
objects, many gzip members, gzip inside gzip — while two more send valid
batches. The worker's peak RSS (the kernel's high-water mark, reset when the
storm starts, and psutil samples from outside) stays under 80 MB; every valid
request gets a 201 and its events are in the spool byte for byte; no bomb gets
a 5xx other than a 503 with Retry-After.

The same storm runs again with routes and a bad route that keeps every rejected
request (``--config``, ``--invalid keep``): the kept payloads must not break the bound.

``SPOOLSHIP_STORM_SECONDS`` (default 10) sets how long the storm lasts.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from receiver.config import ReceiverConfig
from tests.helpers import spool_lines, start_receiver

MB = 1_000_000
PEAK_RSS_LIMIT_BYTES = 80 * MB
STORM_SECONDS = float(os.environ.get("SPOOLSHIP_STORM_SECONDS", "10"))
DEFAULTS = ReceiverConfig(spool_dir=Path("unused"))
INFLATED = DEFAULTS.max_inflated_bytes
PLAIN = DEFAULTS.max_body_bytes

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")


def repeat(unit: bytes, size: int, head: bytes = b"[", tail: bytes = b"]") -> bytes:
    count = (size - len(head) - len(tail)) // (len(unit) + 1)
    return head + (unit + b",") * (count - 1) + unit + tail


def unique_keys(size: int) -> bytes:
    out = bytearray(b'{"k":{')
    i = 0
    while len(out) < size - 16:
        out += b'"%x":{},' % i
        i += 1
    out[-1:] = b"}}"
    return bytes(out)


def gz(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=6, mtime=0)


def bombs() -> list[tuple[str, bytes, str, str | None]]:
    """(name, body, content type, content encoding): each at the default limits' largest."""
    json_type, ndjson_type = "application/json", "application/x-ndjson"
    member = gz(b'{"n":1}\n')
    return [
        ("gzip [{},{},...]", gz(repeat(b"{}", INFLATED)), json_type, "gzip"),
        ("gzip [[],[],...]", gz(repeat(b"[]", INFLATED)), json_type, "gzip"),
        ("gzip [{\"\":0},...]", gz(repeat(b'{"":0}', INFLATED)), json_type, "gzip"),
        ("gzip many keys", gz(unique_keys(INFLATED)), json_type, "gzip"),
        ("gzip ndjson {}", gz(b"{}\n" * (INFLATED // 3)), ndjson_type, "gzip"),
        ("gzip small numbers", gz(repeat(b"0", INFLATED, b'{"a":[', b"]}")), json_type, "gzip"),
        ("gzip numbers 1.5", gz(repeat(b"1.5", INFLATED, b'{"a":[', b"]}")), json_type, "gzip"),
        ("gzip huge numbers", gz(repeat(b"9" * 300, INFLATED, b'{"a":[', b"]}")), json_type, "gzip"),
        ("gzip short strings", gz(repeat(b'"a"', INFLATED, b'{"a":[', b"]}")), json_type, "gzip"),
        ("gzip long string", gz(b'{"s":"' + b"x" * (INFLATED - 64) + b'"}'), json_type, "gzip"),
        ("gzip long wide string", gz(b'{"s":"\\ud83d\\ude00' + b"x" * (INFLATED - 64) + b'"}'), json_type, "gzip"),
        ("gzip deep nesting", gz(b"[" * 500_000 + b"]" * 500_000), json_type, "gzip"),
        ("gzip many members", member * 20_000, ndjson_type, "gzip"),
        ("gzip in gzip", gz(gz(repeat(b"{}", INFLATED))), json_type, "gzip"),
        ("plain [{},{},...]", repeat(b"{}", PLAIN), json_type, None),
        ("plain [[],[],...]", repeat(b"[]", PLAIN), json_type, None),
        ("plain ndjson {}", b"{}\n" * (PLAIN // 3), ndjson_type, None),
        ("plain newlines", b"\n" * PLAIN, ndjson_type, None),
        ("plain long string", b'{"s":"' + b"x" * (PLAIN - 64) + b'"}', json_type, None),
        ("plain invalid utf-8", repeat(b'"\xff"', PLAIN), json_type, None),
    ]


class RssWatch:
    """Samples a process's RSS from outside (psutil) until stopped; the kernel keeps the exact peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def kernel_peak(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def start(self) -> RssWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.samples.append(self.process.memory_info().rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


ROUTES = """
[routing]
field = "kind"
default = "events"
[routes.events]
destination = "d"
[routes.other]
destination = "d"
values = ["other"]
[routes.bad]
destination = "d"
[destinations.d]
type = "kinesis"
stream = "s"
"""


@pytest.mark.parametrize("routed", [False, True], ids=["one spool", "routes, every 400 kept in the bad route"])
def test_a_storm_of_bombs_keeps_a_worker_under_80mb_and_valid_events_flowing(spool_dir, tmp_path, routed):
    extra = ()
    events_dir = spool_dir
    if routed:
        config = tmp_path / "routes.toml"
        config.write_text(ROUTES)
        extra = ("--config", str(config), "--invalid", "keep")
        events_dir = spool_dir / "events"
    receiver, url = start_receiver(spool_dir, "--threads", "8", "--fsync", "never", *extra)
    storm = bombs()
    valid_sent: list[bytes] = []  # the spool lines each 201 promised, in any order
    valid_statuses: list[int] = []
    bomb_statuses: dict[str, dict[int, int]] = {}
    stop = threading.Event()
    errors: list[str] = []

    def send_valid(worker: int) -> None:
        session = requests.Session()
        n = 0
        while not stop.is_set():
            batch = [{"v": f"{worker}-{n}-{i}", "pad": "p" * (i * 7)} for i in range(20)]
            n += 1
            body = json.dumps(batch).encode()
            headers = {"Content-Type": "application/json"}
            if n % 3 == 0:
                body, headers["Content-Encoding"] = gz(body), "gzip"
            try:
                r = session.post(url + "/v1/events", data=body, headers=headers, timeout=30)
            except requests.RequestException as exc:
                errors.append(f"valid request failed: {exc!r}")
                session = requests.Session()
                continue
            valid_statuses.append(r.status_code)
            if r.status_code == 201:
                valid_sent.extend(json.dumps(e, separators=(",", ":")).encode() for e in batch)

    def send_bombs(worker: int) -> None:
        session = requests.Session()
        i = worker
        while not stop.is_set():
            name, body, content_type, encoding = storm[i % len(storm)]
            i += 1
            headers = {"Content-Type": content_type}
            if encoding:
                headers["Content-Encoding"] = encoding
            try:
                r = session.post(url + "/v1/events", data=body, headers=headers, timeout=60)
            except requests.RequestException:
                session = requests.Session()  # the server may close a connection after an error
                continue
            counts = bomb_statuses.setdefault(name, {})
            counts[r.status_code] = counts.get(r.status_code, 0) + 1
            if r.status_code >= 500 and not (r.status_code == 503 and "Retry-After" in r.headers):
                errors.append(f"{name}: {r.status_code} {r.text[:200]}")

    # Warm up: the worker's steady state after ordinary traffic, then measure from here.
    for _ in range(20):
        assert requests.post(url + "/v1/events", json=[{"warm": 1}], timeout=10).status_code == 201
    watch = RssWatch(receiver.process.pid)
    baseline = watch.process.memory_info().rss
    watch.reset_peak()
    watch.start()
    threads = [threading.Thread(target=send_bombs, args=(w,)) for w in range(6)]
    threads += [threading.Thread(target=send_valid, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    time.sleep(STORM_SECONDS)
    stop.set()
    for t in threads:
        t.join(120)
    watch.stop()
    peak = max(watch.kernel_peak(), *watch.samples)
    receiver.stop()

    bombs_sent = sum(sum(c.values()) for c in bomb_statuses.values())
    summary = (f"baseline {baseline / MB:.1f} MB, peak {peak / MB:.1f} MB; {len(valid_statuses)} valid requests, "
               f"{bombs_sent} bombs: {bomb_statuses}")
    print(summary)
    assert not errors, errors[:5]
    assert peak < PEAK_RSS_LIMIT_BYTES, summary
    assert bombs_sent >= len(storm), summary
    assert len(valid_statuses) >= 20 and set(valid_statuses) == {201}, summary
    if routed:
        kept = spool_lines(spool_dir / "bad")
        print(f"{len(kept)} rejected requests kept in the bad route")
        assert kept, "the bad route kept some of the rejected bombs"
    stored = sorted(line.split(b',"_id"')[0] + b"}" for line in spool_lines(events_dir) if b'"v":' in line)
    assert stored == sorted(valid_sent), "every accepted valid event is in the spool, byte for byte"

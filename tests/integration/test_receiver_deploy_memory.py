"""The receiver as the StatefulSet runs it stays within its memory limit under the worst allowed traffic.

The receiver's arguments are read from deploy/kustomize/base/statefulset.yaml
(``--workers=2 --threads=8``, keys, schema, probe port, spool settings; ports
and paths replaced), and the container's memory limit from the same file. For a
shape of event, the largest batch the receiver accepts is found (a binary search
on the event count), then sent 16 at once, three rounds, while 1,900 more
connections hold the largest requests no budget counts (16 KiB of headers and
an 8 KiB body, one byte short). The peak RSS of all the receiver's processes
(anonymous memory of the supervisor, resource tracker and workers, sampled from
outside) stays below the
limit divided by the margin docs/deploy.md states; nothing gets a 5xx but a 503
with Retry-After; some batches get 201.

By default one shape (900-byte strings, gzip: the worst measured) runs;
``SPOOLSHIP_DEPLOY_MEMORY=all`` runs every shape, plain and gzip (docs/deploy.md,
"Memory and /tmp", lists what they measured).
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from tests.helpers import Proc, wait_until

ROOT = Path(__file__).resolve().parents[2]
STATEFULSET = ROOT / "deploy" / "kustomize" / "base" / "statefulset.yaml"
MEMORY_MARGIN = 1.25  # tests/integration/test_deploy.py's
CONCURRENCY = 16
ROUNDS = 3
HOLDERS = 1900
KEY = "deploy-memory-key-0123456789ab"
SHAPES = {
    "wide": lambda i: {"type": "t", **{f"f{j}": j for j in range(60)}},
    "nested": lambda i: {"type": "t", "a": [[1, 2], [3, 4], {"x": [5, 6, 7]}] * 12},
    "pad": lambda i: {"type": "t", "pad": "x" * 900},
    "strings": lambda i: {"type": "t", **{f"s{j}": "abcdefgh" for j in range(30)}},
    "small": lambda i: {"type": "t", "n": i},
}
CASES = ([(shape, enc) for shape in SHAPES for enc in ("plain", "gzip")]
         if os.environ.get("SPOOLSHIP_DEPLOY_MEMORY") == "all" else [("pad", "gzip")])

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")


def quantity_bytes(text: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


def receiver_container() -> dict:
    statefulset = yaml.safe_load(STATEFULSET.read_text())
    return next(c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "receiver")


def receiver_args(tmp_path: Path, keys: Path) -> list[str]:
    """The StatefulSet's receiver arguments, with local ports and paths."""
    replaced = {"--spool-dir": str(tmp_path / "spool"), "--host": "127.0.0.1", "--port": "0", "--probe-port": "0",
                "--schema": str(ROOT / "deploy" / "kustomize" / "base" / "schema.json"), "--api-key-file": str(keys),
                "--shutdown-delay": "0"}
    args = []
    for arg in receiver_container()["args"][1:]:  # after "receive"
        name, _, value = arg.partition("=")
        args.append(f"{name}={replaced.get(name, value)}")
    return args


def batch(shape: str, count: int, encoding: str) -> bytes:
    raw = b"\n".join(json.dumps(SHAPES[shape](i), separators=(",", ":")).encode() for i in range(count)) + b"\n"
    return gzip.compress(raw, 6) if encoding == "gzip" else raw


def post(url: str, body: bytes, encoding: str) -> int:
    headers = {"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {KEY}"}
    if encoding == "gzip":
        headers["Content-Encoding"] = "gzip"
    response = requests.post(url + "/v1/events", data=body, headers=headers, timeout=120)
    assert response.status_code < 500 or (response.status_code == 503 and "Retry-After" in response.headers), \
        response.text[:200]
    return response.status_code


def largest_accepted(url: str, shape: str, encoding: str) -> int:
    low, high = 1, 10_000
    if post(url, batch(shape, high, encoding), encoding) == 201:
        return high
    while low < high:
        middle = (low + high + 1) // 2
        if post(url, batch(shape, middle, encoding), encoding) == 201:
            low = middle
        else:
            high = middle - 1
    return low


def hold_connections(port: int, count: int) -> list[socket.socket]:
    head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8192\r\n"
    pad = b"X-Pad: " + b"a" * (16 * 1024 - len(head) - 200) + b"\r\n"
    request = head + pad + b"\r\n" + b" " * 8191
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(request)
        held.append(sock)
    return held


def anonymous_bytes(process: psutil.Process) -> int:
    """RssAnon: the private memory the container's cgroup is charged for (shared libraries once, not here)."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """The most anonymous RSS a process and its children had at once, sampled every 20 ms from outside."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            total = 0
            for process in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += anonymous_bytes(process)
                except (psutil.Error, OSError):
                    continue  # gone while we looked
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


@pytest.mark.parametrize(("shape", "encoding"), CASES)
def test_the_deployed_receiver_stays_within_its_memory_limit(tmp_path, shape, encoding):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < HOLDERS + 2 * 1024:
        pytest.skip(f"needs {HOLDERS + 2048} file descriptors (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HOLDERS + 2048), hard))
    limit = quantity_bytes(receiver_container()["resources"]["limits"]["memory"])
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    os.utime(keys, (time.time() - 60, time.time() - 60))
    proc = Proc("receive", *receiver_args(tmp_path, keys), env={"TMPDIR": str(tmp_path)})
    started = proc.wait_for_log("supervisor started", timeout=60)
    url, port = f"http://127.0.0.1:{started['port']}", started["port"]
    wait_until(lambda: len([r for r in proc.logs if r.get("event") == "receiver listening"]) == 2, timeout=60,
               message="both workers listening")
    try:
        count = largest_accepted(url, shape, encoding)
        body = batch(shape, count, encoding)
        held = hold_connections(port, HOLDERS)
        peak = PeakRss(proc.process.pid)
        statuses: list[int] = []
        for _ in range(ROUNDS):
            threads = [threading.Thread(target=lambda: statuses.append(post(url, body, encoding)))
                       for _ in range(CONCURRENCY)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        peak_bytes = peak.stop()
        for sock in held:
            sock.close()
    finally:
        proc.stop()
    print(f"{shape}/{encoding}: {count} events per batch, peak RssAnon {peak_bytes / 2**20:.0f} MiB, "
          f"statuses {sorted(set(statuses))}")
    assert statuses.count(201) >= ROUNDS, statuses
    assert peak_bytes * MEMORY_MARGIN <= limit, (
        f"{shape}/{encoding} ({count} events): peak RSS {peak_bytes / 2**20:.0f} MiB x {MEMORY_MARGIN} > "
        f"the limit {limit / 2**20:.0f} MiB")

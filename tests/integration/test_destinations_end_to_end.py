"""Routes end to end: three types of events and rejected beacons, through real processes, to four destinations.

`spoolship receive --config` (2 workers, a schema) and `spoolship tail --config` (one loop per route) as real
processes. Destinations on real servers over HTTP: pages and other events to Kinesis streams on kinesalite
(volume; moto if Node.js is missing), clicks to a Firehose delivery stream on moto writing to moto's S3, signed
with a role assumed from moto's STS (through a proxy that refuses any call not signed with the role's
credentials), rejected beacons to a Kinesis stream on moto. Every acknowledged ``_id`` must be in its route's
destination and in no other; every rejected beacon in the bad destination with its errors; no rejected JSON
request there (``--invalid beacons``).
"""

from __future__ import annotations

import json
import random
import signal
import threading

import pytest
import requests

from tests.helpers import Proc, segments_left, wait_until
from tests.servers.expiring_credentials import ExpiringCredentialsProxy
from tests.servers.firehose import create_delivery_stream, delivered_lines
from tests.servers.kinesis import Kinesalite

SCHEMA = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}, "n": {"type": "integer"}}}
TYPES = ("page", "click", "view")
ROLE = "arn:aws:iam::123456789012:role/clicks-writer"


@pytest.fixture
def volume(request):
    return request.getfixturevalue("kinesalite" if Kinesalite.available() is None else "moto")


def config_text(spool, volume, moto, proxy, streams, hose) -> str:
    return f"""
spool_dir = "{spool}"
[routing]
field = "type"
default = "events"
[routes.events]
destination = "events"
[routes.pages]
destination = "pages"
values = ["page"]
[routes.clicks]
destination = "clicks"
values = ["click"]
[routes.bad]
destination = "rejected"
max_events_per_second = 1000
[destinations.events]
type = "kinesis"
stream = "{streams['events']}"
endpoint_url = "{volume.endpoint}"
[destinations.pages]
type = "kinesis"
stream = "{streams['pages']}"
endpoint_url = "{volume.endpoint}"
aggregate = true
[destinations.clicks]
type = "firehose"
delivery_stream = "{hose}"
endpoint_url = "{proxy.endpoint}"
role_arn = "{ROLE}"
external_id = "e2e-test"
sts_endpoint_url = "{proxy.endpoint}"
[destinations.rejected]
type = "kinesis"
stream = "{streams['rejected']}"
endpoint_url = "{moto.endpoint}"
"""


class Clients:
    """Clients posting batches of mixed types with their own _ids, and some rejected requests."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.acked: dict[str, str] = {}  # _id -> type
        self.rejected_beacons: list[str] = []
        self.rejected_json: list[str] = []
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,)) for c in range(clients)]

    def start(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _count(self, status: int) -> None:
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def _run(self, client: int) -> None:
        rng = random.Random(client)
        session = requests.Session()
        n = 0
        while not self._stop.is_set():
            roll = rng.random()
            if roll < 0.04:  # a beacon that does not parse, or fails the schema: kept
                body = f'{{"type":"click","beacon":"c{client}-{n}"' if roll < 0.02 else \
                    f'{{"type":7,"beacon":"c{client}-{n}"}}'
                r = session.post(self.url + "/v1/events", data=body, headers={"Content-Type": "text/plain"}, timeout=10)
                self._count(r.status_code)
                assert r.status_code == 400, r.text
                with self._lock:
                    self.rejected_beacons.append(body)
                n += 1
                continue
            if roll < 0.06:  # a JSON client's invalid batch: answered 400, not kept
                body = json.dumps([{"type": "page", "json": f"c{client}-{n}"}, {"n": "x"}])
                r = session.post(self.url + "/v1/events", data=body, headers={"Content-Type": "application/json"},
                                 timeout=10)
                self._count(r.status_code)
                assert r.status_code == 400, r.text
                with self._lock:
                    self.rejected_json.append(f"c{client}-{n}")
                n += 1
                continue
            batch = [{"_id": f"c{client}-{n + i}", "type": rng.choice(TYPES), "n": n + i, "pad": "x" * rng.randint(0, 300)}
                     for i in range(rng.randint(1, 10))]
            n += len(batch)
            for _ in range(50):
                r = session.post(self.url + "/v1/events", json=batch, timeout=10)
                self._count(r.status_code)
                if r.status_code != 503:
                    break
            assert r.status_code == 201, r.text
            with self._lock:
                self.acked.update((e["_id"], e["type"]) for e in batch)


def test_events_of_three_types_and_rejected_beacons_each_reach_their_destination(volume, moto, tmp_path):
    spool = tmp_path / "spool"
    streams = {"events": volume.create_stream(shards=2), "pages": volume.create_stream(shards=2),
               "rejected": moto.create_stream(shards=1)}
    hose = create_delivery_stream(moto)
    proxy = ExpiringCredentialsProxy(moto.port, lifetime_seconds=3600)
    config = tmp_path / "routes.toml"
    config.write_text(config_text(spool, volume, moto, proxy, streams, hose))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    check = Proc("check", "--config", str(config))
    assert check.process.wait(60) == 0, "".join(check.raw)

    receiver = Proc("receive", "--config", str(config), "--port", "0", "--workers", "2", "--schema", str(schema),
                    "--min-free-bytes", "0")
    url = f"http://127.0.0.1:{receiver.wait_for_log('supervisor started')['port']}"
    wait_until(lambda: sum(1 for r in receiver.logs if r.get("event") == "receiver listening") >= 2, timeout=60)
    tailer = Proc("tail", "--config", str(config), "--linger", "0.05", "--poll-interval", "0.5",
                  "--checkpoint-interval", "0.2", "--max-backoff", "0.5")
    wait_until(lambda: sum(1 for r in tailer.logs if r.get("event") == "tailer started") == 4, timeout=60,
               message="a loop per route")
    clients = Clients(url).start()
    wait_until(lambda: len(clients.acked) >= 6000, timeout=120, interval=0.2, message="6,000 events acknowledged")
    clients.stop()
    assert receiver.stop(signal.SIGTERM) == 0
    for route in ("events", "pages", "clicks", "bad"):
        wait_until(lambda r=route: segments_left(spool / r) == 0, timeout=120, message=f"{route} drained")
    assert tailer.stop(signal.SIGTERM) == 0
    proxy.close()

    found: dict[str, dict[str, int]] = {}
    for destination, lines in (("events", volume.read_lines(streams["events"])),
                               ("pages", volume.read_lines(streams["pages"])),
                               ("clicks", delivered_lines(moto.endpoint, hose))):
        for line in lines:
            event = json.loads(line)
            assert "json" not in event, "nothing of a rejected request reaches a route's destination"
            where = found.setdefault(event["_id"], {})
            where[destination] = where.get(destination, 0) + 1
    expected = {"page": "pages", "click": "clicks", "view": "events"}
    missing = [i for i in clients.acked if i not in found]
    misplaced = [i for i, kind in clients.acked.items() if i in found and set(found[i]) != {expected[kind]}]
    assert not missing, f"{len(missing)} acknowledged events missing, e.g. {missing[:5]}"
    assert not misplaced, f"{len(misplaced)} events elsewhere than their route says, e.g. {misplaced[:5]}"
    assert {expected[kind] for kind in clients.acked.values()} == {"events", "pages", "clicks"}

    bad = [json.loads(line) for line in moto.read_lines(streams["rejected"])]
    assert sorted(b["payload"] for b in bad) == sorted(clients.rejected_beacons), "every rejected beacon, once"
    assert all(b["error"] in ("bad_request", "invalid") and b["content_type"] == "text/plain" for b in bad)
    assert all("errors" in b for b in bad if b["error"] == "invalid")
    assert clients.rejected_json and not any("json" in b["payload"] for b in bad), "JSON clients' 400s not kept"
    assert proxy.counts["calls"] > 0 and proxy.counts["not_the_role"] == 0, "clicks were signed with the role"
    print(f"acknowledged {len(clients.acked)}, rejected beacons {len(clients.rejected_beacons)}, "
          f"statuses {clients.statuses}, firehose calls {proxy.counts['calls']}")

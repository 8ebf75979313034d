"""A load generator for tests: clients posting events with client-chosen ``_id``s."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import orjson
import requests


class Load:
    """Clients posting events (singles and batches of up to 10) until stopped.

    A client that gets 503 honours Retry-After (capped at 0.5 s) and sends the
    same events again, as a good client would; one whose connection fails
    also retries the same events. Only 201s count as acknowledged.
    """

    def __init__(self, url_of, clients: int = 4, rate_per_client: float = 80.0, seed: int = 0,
                 keepalive: bool = True, headers: dict[str, str] | None = None) -> None:
        self.url_of = url_of  # a callable: the URL may change when the receiver restarts
        # Without keep-alive every request opens a connection, as many browsers do, and
        # SO_REUSEPORT spreads them over all workers (a restarted one included).
        self._headers = {"Content-Type": "application/json", **({} if keepalive else {"Connection": "close"}),
                         **(headers or {})}
        self.acked: dict[str, bytes] = {}
        self.statuses: Counter = Counter()
        self.connection_errors = 0
        # Events sent again after a connection failed mid-request: the receiver may have
        # spooled the first copy before it died, so these may appear twice (at-least-once).
        self.resent: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rate = rate_per_client
        self._threads = [threading.Thread(target=self._run, args=(c, seed), daemon=True) for c in range(clients)]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, client: int, seed: int) -> None:
        rng = random.Random(seed * 100 + client)
        session = requests.Session()
        n = 0
        while not self._stop.is_set():
            count = 1 if rng.random() < 0.7 else rng.randint(2, 10)
            events = [{"_id": f"c{client}-{n + i}", "client": client, "n": n + i, "note": "é✓" if i % 3 else "x",
                       "pad": "p" * rng.randint(0, 300)} for i in range(count)]
            n += count
            body = orjson.dumps(events if count > 1 else events[0])
            deadline = time.monotonic() + 60
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    r = session.post(self.url_of() + "/v1/events", data=body, headers=self._headers, timeout=10)
                except requests.RequestException:
                    with self._lock:
                        self.connection_errors += 1
                        self.resent.update(event["_id"] for event in events)
                    session = requests.Session()
                    time.sleep(0.05)
                    continue
                with self._lock:
                    self.statuses[r.status_code] += 1
                if r.status_code == 201:
                    with self._lock:
                        for event in events:
                            self.acked[event["_id"]] = orjson.dumps(event)
                    break
                if r.status_code == 503:
                    time.sleep(min(0.5, float(r.headers.get("Retry-After", "1"))))
                    continue
                break  # any other answer is a test failure, reported through statuses
            time.sleep(rng.expovariate(self._rate))

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500 and code != 503)

"""Where a receiver request's time goes, in-process: the receiver's WSGI app against the bare one.

Calls both apps (receiver/app.py's and bench/bare_app.py's, each wrapped like
waitress serves them) with the same WSGI environ, in one thread, without HTTP:
the difference per request is what spoolship adds to Flask. Then, with
``--profile``, cProfile's top functions of the receiver's request, so that a cut
can be aimed and its effect seen (docs/performance.md quotes the before/after).
Not a target: the HTTP figures are bench/receiver.py's.

usage: bench/receiver_profile.py [--events 1|100] [--requests N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # not bench/ first: bench/receiver.py would shadow the package
    sys.path[0] = str(ROOT)

from bench.bare_app import create_bare_app  # noqa: E402
from bench.receiver import BATCH, EVENT  # noqa: E402
from receiver.app import create_app  # noqa: E402
from receiver.config import ReceiverConfig  # noqa: E402
from receiver.listener import with_security_headers  # noqa: E402
from spooler import FsyncPolicy  # noqa: E402

__all__ = ["main", "per_request_us"]


def _environ(body: bytes) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/events", "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_HOST": "127.0.0.1:8080", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "wsgi.version": (1, 0)}


def _start_response(status, headers, exc_info=None):
    if not status.startswith("201"):
        raise RuntimeError(f"answer {status}")


def call(app, body: bytes) -> None:
    for _chunk in app(_environ(body), _start_response):
        pass


def per_request_us(app, body: bytes, requests: int) -> float:
    call(app, body)  # warm-up
    started = time.thread_time()  # CPU time of this thread: other processes on the machine do not count
    for _ in range(requests):
        call(app, body)
    return (time.thread_time() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, choices=(1, 100), default=100)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    body = EVENT if args.events == 1 else BATCH
    spool = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    config = ReceiverConfig(spool_dir=spool, fsync=FsyncPolicy.INTERVAL, min_free_bytes=0,
                            max_spool_bytes=64 * 1024**3)
    receiver = create_app(config)
    try:
        apps = {"bare": with_security_headers(create_bare_app(config.max_body_bytes)),
                "receiver": with_security_headers(receiver)}
        best = {name: min(per_request_us(app, body, args.requests) for _ in range(args.rounds))
                for name, app in apps.items()}
        added = best["receiver"] - best["bare"]
        print(f"{args.events} event(s) a request, CPU: bare {best['bare']:.1f} µs, receiver {best['receiver']:.1f} µs, "
              f"added {added:.1f} µs a request ({added / args.events:.2f} µs an event); best of {args.rounds}")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                call(apps["receiver"], body)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    finally:
        receiver.extensions["spoolship"].writer.close()
        shutil.rmtree(spool, ignore_errors=True)


if __name__ == "__main__":
    main()

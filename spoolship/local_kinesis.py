"""A local Kinesis-API server for `spoolship up` and the tests: moto, one request at a time.

moto's own server is threaded, and its Kinesis model allocates sequence numbers
without a lock: concurrent PutRecords calls overwrite each other's records (we
measured 2-3 lost per 1,500 with 4 concurrent callers; the same class of bug as
kinesis-mock #130). Serving moto's WSGI app single-threaded makes it a faithful
(if slower) stand-in for Kinesis. Binds 127.0.0.1 by default and prints
``Running on http://HOST:PORT`` once it listens.

usage: python -m spoolship.local_kinesis [--host 127.0.0.1] [--port 4567]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

__all__ = ["serve"]


def serve(host: str = "127.0.0.1", port: int = 4567) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, port, app, threaded=False, processes=1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"Running on http://{host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4567)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()

"""A local Kinesis-API server for `spoolship up` and the tests: moto, one request at a time.

moto's own server is threaded, and its Kinesis model allocates sequence numbers
without a lock: concurrent PutRecords calls overwrite each other's records (we
measured 2-3 lost per 1,500 with 4 concurrent callers; the same class of bug as
kinesis-mock #130). Serving moto's WSGI app single-threaded makes it a faithful
(if slower) stand-in for Kinesis. Binds 127.0.0.1 by default and prints
``Running on http://HOST:PORT`` once it listens.

usage: python -m spoolship.local_kinesis [--host 127.0.0.1] [--port 4567] [--create-stream NAME[:SHARDS]]...
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

__all__ = ["serve"]


def _create_streams(url: str, streams: list[str]) -> None:
    import boto3

    client = boto3.client("kinesis", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    for spec in streams:
        name, _, shards = spec.partition(":")
        client.create_stream(StreamName=name, ShardCount=int(shards or 1))
        print(f"stream {name} created", flush=True)


def serve(host: str = "127.0.0.1", port: int = 4567, streams: list[str] | None = None) -> None:
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, port, app, threaded=False, processes=1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if streams:
        local = f"http://127.0.0.1:{server.port}" if host in ("0.0.0.0", "::") else f"http://{host}:{server.port}"
        threading.Thread(target=_create_streams, args=(local, streams), daemon=True).start()
    print(f"Running on http://{host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spoolship.local_kinesis", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4567)
    parser.add_argument("--create-stream", action="append", default=[], metavar="NAME[:SHARDS]",
                        help="create this stream once listening (repeatable)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serve(args.host, args.port, args.create_stream)


if __name__ == "__main__":
    main()

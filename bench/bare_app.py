"""The receiver's baseline: a bare Flask app on the receiver's waitress settings that reads the body and answers 201.

It reads the request body exactly as receiver/app.py's ``post_events`` does
(Content-Length, the same cap, then ``wsgi.input.read`` of that many bytes) and
does nothing else with it: what the receiver adds on top — parsing, validation,
stamping, serializing, the spool append, metrics — is what the ratio measures.
An endpoint that answered without reading would leave the body's cost out of
the baseline and make the ratio harsher than the work compared.

usage: bare_app.py PORT THREADS
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # not bench/ first: bench/receiver.py would shadow the package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from flask import Flask, Response, request  # noqa: E402

from receiver.config import ReceiverConfig  # noqa: E402
from receiver.server import bind_socket, make_server  # noqa: E402

__all__ = ["create_bare_app", "main"]


def create_bare_app(max_body_bytes: int) -> Flask:
    app = Flask("bare")

    @app.post("/v1/events")
    def events() -> Response:
        environ = request.environ
        length = environ.get("CONTENT_LENGTH")
        if not length:
            body = request.get_data(cache=False)
        elif int(length) > max_body_bytes:
            return Response(b"", status=413)
        else:
            body = environ["wsgi.input"].read(int(length))
        return Response(b'{"read":%d}' % len(body), status=201, content_type="application/json")

    return app


def main() -> None:
    port, threads = int(sys.argv[1]), int(sys.argv[2])
    config = ReceiverConfig(spool_dir="/nonexistent", port=port, threads=threads)
    sock = bind_socket("127.0.0.1", port, reuse_port=False)
    print(f"listening {sock.getsockname()[1]}", flush=True)
    make_server(create_bare_app(config.max_body_bytes), sock, config).run()


if __name__ == "__main__":
    main()

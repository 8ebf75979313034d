"""The baseline: a bare Flask app on waitress that only answers 201, same server settings.

usage: bare_app.py PORT THREADS
"""

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # not bench/: bench/receiver.py shadows the package

from flask import Flask, Response  # noqa: E402

from receiver.config import ReceiverConfig  # noqa: E402
from receiver.server import bind_socket, make_server  # noqa: E402

app = Flask("bare")


@app.post("/v1/events")
def events() -> Response:
    return Response(b"", status=201)


port, threads = int(sys.argv[1]), int(sys.argv[2])
config = ReceiverConfig(spool_dir="/nonexistent", port=port, threads=threads)
sock = bind_socket("127.0.0.1", port, reuse_port=False)
print(f"listening {sock.getsockname()[1]}", flush=True)
make_server(app, sock, config).run()

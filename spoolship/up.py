"""`spoolship up`: the whole pipeline on one machine, as child processes that stop together.

With the embedded AWS-API server (moto, single-threaded: see local_kinesis.py) on
127.0.0.1, it shows routes: a config file (written to ``<spool>/up.toml``) sends
events by their ``type`` — clicks to a Firehose delivery stream that writes to
S3, everything else to the Kinesis stream — and keeps rejected beacons in a bad
route with a stream of its own; a receiver and a tailer (one loop per route)
run on it. With ``--endpoint-url`` or ``--aws`` it is one stream, as before. On
Ctrl-C / SIGTERM the receiver stops first (sealing its segments), then the
tailer drains everything, then the embedded server stops.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import click
from botocore.exceptions import BotoCoreError, ClientError

from tailer.aws import make_session

from .up_routes import BAD_STREAM, CLICKS, ensure_delivery_stream, routed_banner, write_config

__all__ = ["LocalPipeline", "UpOptions"]

READY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class UpOptions:
    host: str
    port: int
    kinesis_port: int
    stream: str
    spool_dir: Path
    endpoint_url: str | None
    aws: bool
    region: str | None
    shards: int
    log_level: str
    drain_timeout_seconds: float


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class UpError(click.ClickException):
    pass


class LocalPipeline:
    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.children: dict[str, subprocess.Popen] = {}
        self.endpoint_url = options.endpoint_url
        self.port = options.port or _free_port(options.host)
        self._stop = threading.Event()
        # Routes need Firehose and S3, which only the embedded server is known to have.
        self.routed = not options.aws and not options.endpoint_url
        self.config_file = options.spool_dir / "up.toml"

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.routed:
            self._start_kinesis()
        self._ensure_stream(self.options.stream)
        self.options.spool_dir.mkdir(parents=True, exist_ok=True)
        if self.routed:
            self._ensure_stream(BAD_STREAM)
            try:
                ensure_delivery_stream(*make_session(self.endpoint_url, self.options.region), self.endpoint_url)
            except (ClientError, BotoCoreError) as exc:
                self.stop()
                raise UpError(f"cannot create the delivery stream {CLICKS!r}: {exc}") from None
            write_config(self.config_file, self.options.spool_dir, self.options.stream, self.endpoint_url)
            self._spawn("receiver", "receive", "--config", str(self.config_file), "--host", self.options.host,
                        "--port", str(self.port))
            self._spawn("tailer", "tail", "--config", str(self.config_file),
                        "--drain-timeout", str(self.options.drain_timeout_seconds))
            self._wait_ready()
            return
        self._spawn("receiver", "receive", "--spool-dir", str(self.options.spool_dir), "--host", self.options.host,
                    "--port", str(self.port))
        tail_args = ["tail", "--spool-dir", str(self.options.spool_dir), "--stream", self.options.stream,
                     "--drain-timeout", str(self.options.drain_timeout_seconds)]
        if self.endpoint_url:
            tail_args += ["--endpoint-url", self.endpoint_url]
        if self.options.region:
            tail_args += ["--region", self.options.region]
        self._spawn("tailer", *tail_args)
        self._wait_ready()

    def _start_kinesis(self) -> None:
        """The embedded Kinesis-API server (moto, single-threaded: spoolship.local_kinesis)."""
        port = self.options.kinesis_port
        process = subprocess.Popen(
            [sys.executable, "-m", "spoolship.local_kinesis", "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.children["kinesis"] = process
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        output = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            match = re.search(r"Running on (http://\S+)", line)
            if match:
                self.endpoint_url = match.group(1)
                threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
                return
        self.stop()
        raise UpError("the embedded Kinesis server did not start:\n" + "".join(output[-20:]))

    def _ensure_stream(self, stream: str) -> None:
        session, region = make_session(self.endpoint_url, self.options.region)
        try:
            client = session.client("kinesis", endpoint_url=self.endpoint_url, region_name=region)
            try:
                client.describe_stream_summary(StreamName=stream)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceNotFoundException" or self.options.aws:
                    raise
                client.create_stream(StreamName=stream, ShardCount=self.options.shards)
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while client.describe_stream_summary(StreamName=stream)[
                    "StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
                if time.monotonic() > deadline:
                    raise UpError(f"stream {stream} did not become ACTIVE")
                time.sleep(0.2)
        except (ClientError, BotoCoreError) as exc:
            self.stop()
            raise UpError(f"cannot use stream {stream!r}: {exc}") from None

    def _spawn(self, name: str, *args: str) -> None:
        env = dict(os.environ)
        if self.endpoint_url and not self.options.aws:
            session, region = make_session(self.endpoint_url, self.options.region)
            credentials = session.get_credentials()
            env.setdefault("AWS_ACCESS_KEY_ID", credentials.access_key)
            env.setdefault("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
            env.setdefault("AWS_DEFAULT_REGION", region)
        env["SPOOLSHIP_LOG_LEVEL"] = self.options.log_level
        self.children[name] = subprocess.Popen([sys.executable, "-m", "spoolship", *args], env=env,
                                               start_new_session=True)

    def _wait_ready(self) -> None:
        url = f"http://{self.options.host}:{self.port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            self._check_children()
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise UpError(f"the receiver did not become ready at {url}")

    def _check_children(self) -> None:
        for name, process in self.children.items():
            code = process.poll()
            if code is not None:
                self.stop()
                raise UpError(f"the {name} exited unexpectedly (code {code}); see its log above")

    # -- run and stop ----------------------------------------------------------------------

    @staticmethod
    def command_name() -> str:
        """How the user can run spoolship again: the script they ran, relative to here if it is below."""
        script = Path(sys.argv[0])
        if script.name != "spoolship":
            return f"{sys.executable} -m spoolship"
        if shutil.which("spoolship") == str(script.resolve()) or shutil.which("spoolship") == str(script):
            return "spoolship"
        try:
            return "./" + str(script.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(script.resolve())

    def banner(self) -> str:
        if self.routed:
            return routed_banner(self.command_name(), f"http://{self.options.host}:{self.port}", self.config_file,
                                 self.endpoint_url, self.options.stream)
        exe = self.command_name()
        receiver = f"http://{self.options.host}:{self.port}"
        where = "embedded moto server" if "kinesis" in self.children else "external"
        endpoint = f" --endpoint-url {self.endpoint_url}" if self.endpoint_url else ""
        event = shlex.quote('{"type":"hello","n":1}')
        return "\n".join([
            "",
            "spoolship is up",
            f"  receiver  {receiver}   spool: {self.options.spool_dir}",
            f"  kinesis   {self.endpoint_url or 'AWS'}   stream: {self.options.stream} ({where})",
            "",
            "Send an event:",
            f"  curl -X POST {receiver}/v1/events -H 'Content-Type: application/json' -d {event}",
            "",
            "Watch events arrive (in another terminal):",
            f"  {exe} peek --stream {self.options.stream}{endpoint} --follow",
            "",
            "See the spool:",
            f"  {exe} status --spool-dir {self.options.spool_dir}",
            "",
            "Ctrl-C stops everything (the tailer ships what is left first).",
            "",
        ])

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            self._check_children()

    def request_stop(self, *_args: object) -> None:
        self._stop.set()

    def stop(self) -> int:
        """Receiver first (seals), then the tailer (drains), then Kinesis. Returns an exit code."""
        code = 0
        for name in ("receiver", "tailer", "kinesis"):
            process = self.children.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            timeout = self.options.drain_timeout_seconds + 30 if name == "tailer" else 30
            try:
                result = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                result = process.wait()
            if name != "kinesis" and result != 0:
                click.echo(f"the {name} exited with code {result}", err=True)
                code = 1
        return code

"""Real Kinesis-API servers for tests: moto's server mode and kinesalite, on 127.0.0.1.

Each runs as its own process; tests create a fresh stream each (moto slows as a
stream grows). ``read_stream`` reads every shard back with GetRecords.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
KINESALITE_LAUNCHER = Path(__file__).with_name("kinesalite_local.js")
KINESALITE_PACKAGE = ROOT / ".tools" / "node_modules" / "kinesalite"


def kinesis_client(endpoint: str):
    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 10, "mode": "standard"}))


class KinesisServer:
    name = "kinesis"

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.port = 0
        self._output: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        return kinesis_client(self.endpoint)

    def _start(self, cmd: list[str], pattern: str, timeout: float = 60) -> None:
        # stdin a pipe held by this process alone, closed when it dies: tests/servers/kinesalite_local.js exits
        # then (moto's server never reads it)
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        found = threading.Event()

        def pump() -> None:
            for line in self.process.stdout:
                self._output.append(line)
                match = re.search(pattern, line)
                if match and not found.is_set():
                    self.port = int(match.group(1))
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout):
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {''.join(self._output)[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def create_stream(self, shards: int = 2, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_stream(StreamName=name, ShardCount=shards)
        deadline = time.monotonic() + 30
        while client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
            assert time.monotonic() < deadline, "stream never became ACTIVE"
            time.sleep(0.1)
        return name

    def read_records(self, stream: str) -> list[dict]:
        """Every record of every shard (boto3 format), in shard order."""
        client = self.client()
        out = []
        for shard in client.list_shards(StreamName=stream)["Shards"]:
            iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                                 ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            empty = 0
            while iterator and empty < 2:
                page = client.get_records(ShardIterator=iterator, Limit=10000)
                for record in page["Records"]:
                    record["ShardId"] = shard["ShardId"]
                out.extend(page["Records"])
                empty = 0 if page["Records"] else empty + 1
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        return out

    def read_lines(self, stream: str) -> list[bytes]:
        """Every user record's data, deaggregated by aws-kinesis-agg (not our code)."""
        lines = []
        for record in self.read_records(stream):
            lines.extend(user_records(record))
        return lines


def user_records(record: dict) -> list[bytes]:
    """aws-kinesis-agg hands plain records back raw but sub-records base64-encoded."""
    aggregated = record["Data"].startswith(b"\xf3\x89\x9a\xc2")
    out = []
    for user in iter_deaggregate_records(record, data_format="Boto3"):
        data = user["kinesis"]["data"]
        out.append(base64.b64decode(data) if aggregated else data)
    return out


class MotoServer(KinesisServer):
    """moto, served one request at a time (its threaded server loses concurrent puts)."""

    name = "moto"

    def start(self) -> MotoServer:
        self._start([sys.executable, "-m", "spoolship.local_kinesis", "--host", "127.0.0.1", "--port", "0"],
                    r"Running on http://127\.0\.0\.1:(\d+)")
        return self


class Kinesalite(KinesisServer):
    name = "kinesalite"

    @staticmethod
    def available() -> str | None:
        """None if it can run here, else why not."""
        if shutil.which("node") is None:
            return "Node.js is not installed"
        if not KINESALITE_PACKAGE.is_dir():
            return "kinesalite is not installed (run `make kinesalite`)"
        return None

    def start(self) -> Kinesalite:
        self._start(["node", str(KINESALITE_LAUNCHER), "0"], r"LISTENING (\d+)")
        return self

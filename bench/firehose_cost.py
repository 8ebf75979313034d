"""Firehose: records and billed bytes per million 200-byte events, packed (the tailer) vs one event per record.

Firehose bills ingestion per record rounded up to 5 KB. The tailer packs whole
NDJSON lines into records of up to 1,000 KiB; the baseline, in the same run and
over the same lines, is one event per record (what a naive PutRecordBatch loop
or an agent without packing sends). The tailer really ships the lines: a
Shipper with the real FirehoseSink, in this process, to a delivery stream on
moto's server writing to moto's S3; every record of every PutRecordBatch call
is counted on its way out, every line is read back from S3. CPU is this
process's (the tailer's) user+sys seconds, normalized per million lines.

    .venv/bin/python bench/firehose_cost.py [--lines 200000] [--price-per-gb 0.029]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: the packages must win over bench/'s module names

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, list_segments  # noqa: E402
from tailer import Shipper, TailerConfig  # noqa: E402
from tailer.aws import make_session  # noqa: E402
from tailer.firehose import FirehoseSink  # noqa: E402
from tests.servers.firehose import create_delivery_stream, delivered_lines  # noqa: E402
from tests.servers.kinesis import MotoServer  # noqa: E402

BILLING_UNIT = 5 * 1024  # Firehose rounds each record up to 5 KB
EVENTS_PER_HOUR = 12_000_000  # the team of DESIGN.md
HOURS_PER_MONTH = 730


def event_line(n: int, size: int = 200) -> bytes:
    head = b'{"type":"page","n":%d,"_id":"06H1DQ1NB1B7SRBN91O8KG%06d","pad":"' % (n, n % 1_000_000)
    return head + b"x" * (size - len(head) - 3) + b'"}\n'


def billed(sizes: list[int]) -> int:
    return sum(math.ceil(size / BILLING_UNIT) * BILLING_UNIT for size in sizes)


class CountingSink:
    """The real sink, with every record it sends counted (sizes of the accepted ones)."""

    def __init__(self, sink: FirehoseSink) -> None:
        self.sink = sink
        self.calls = 0
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def put_records(self, records):
        result = self.sink.put_records(records)
        failed = {i for i, _, _ in result.failed} | {i for i, _, _ in result.rejected}
        with self._lock:
            self.calls += 1
            self.sizes += [len(data) for i, (data, _, _) in enumerate(records) if i not in failed]
        return result

    def close(self) -> None:
        self.sink.close()


def run(lines: int, price_per_gb: float) -> dict:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")  # tests/servers/firehose.py's clients, on moto
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    server = MotoServer().start()
    try:
        hose = create_delivery_stream(server)
        with tempfile.TemporaryDirectory() as tmp:
            spool = Path(tmp) / "spool"
            with SpoolWriter(WriterConfig(spool, "bench", min_free_bytes=0, fsync=FsyncPolicy.NEVER)) as writer:
                batch = []
                for n in range(lines):
                    batch.append(event_line(n))
                    if len(batch) == 1000:
                        writer.append(b"".join(batch))
                        batch = []
                if batch:
                    writer.append(b"".join(batch))
            session, region = make_session(server.endpoint, "us-east-1")  # placeholder keys for a local server
            sink = CountingSink(FirehoseSink(hose, endpoint_url=server.endpoint, region=region, session=session))
            config = TailerConfig(spool, hose, destination="firehose", endpoint_url=server.endpoint,
                                  region="us-east-1", max_batch_bytes=4 * 1024 * 1024, linger_seconds=0.25)
            shipper = Shipper(config, sink)
            stop = threading.Event()
            cpu_before, started = time.process_time(), time.monotonic()
            thread = threading.Thread(target=shipper.run, args=(stop,))
            thread.start()
            while list_segments(spool, probe=False):
                time.sleep(0.1)
            cpu, elapsed = time.process_time() - cpu_before, time.monotonic() - started
            stop.set()
            thread.join(60)
            sink.close()
        delivered = delivered_lines(server.endpoint, hose)
        if len(delivered) != lines:
            raise SystemExit(f"{len(delivered)} lines in S3, {lines} shipped: the benchmark is wrong")
    finally:
        server.stop()
    per_million = 1_000_000 / lines
    line_bytes = len(event_line(0))
    packed_billed = billed(sink.sizes) * per_million
    plain_billed = billed([line_bytes] * lines) * per_million
    month_events = EVENTS_PER_HOUR * HOURS_PER_MONTH
    return {
        "benchmark": "firehose_cost", "lines": lines, "event_bytes": line_bytes,
        "packed_records_per_million": round(len(sink.sizes) * per_million, 1),
        "packed_billed_gb_per_million": round(packed_billed / 1024**3, 4),
        "plain_records_per_million": 1_000_000,
        "plain_billed_gb_per_million": round(plain_billed / 1024**3, 4),
        "billed_ratio_plain_to_packed": round(plain_billed / packed_billed, 1),
        "put_record_batch_calls_per_million": round(sink.calls * per_million, 1),
        "tailer_cpu_seconds_per_million": round(cpu * per_million, 2),
        "elapsed_seconds": round(elapsed, 1),
        "price_per_gb": price_per_gb,
        "packed_dollars_per_month_at_12m_per_hour": round(packed_billed / 1e6 * month_events / 1024**3 * price_per_gb),
        "plain_dollars_per_month_at_12m_per_hour": round(plain_billed / 1e6 * month_events / 1024**3 * price_per_gb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--price-per-gb", type=float, default=0.029,
                        help="Direct PUT ingestion, first 500 TB/month, us-east-1 when this was written")
    args = parser.parse_args()
    result = run(args.lines, args.price_per_gb)
    print("| | records per million events | billed GB per million | $/month at 12M events/hour |")
    print("| --- | --- | --- | --- |")
    print(f"| one event per record | {result['plain_records_per_million']:,} | "
          f"{result['plain_billed_gb_per_million']} | ~${result['plain_dollars_per_month_at_12m_per_hour']:,} |")
    print(f"| packed (spoolship) | {result['packed_records_per_million']:,} | "
          f"{result['packed_billed_gb_per_million']} | ~${result['packed_dollars_per_month_at_12m_per_hour']:,} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

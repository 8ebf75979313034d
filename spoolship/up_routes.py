"""The routes `spoolship up` shows on the embedded moto server: its config file, delivery stream and banner.

Clicks go to a Firehose delivery stream writing to S3, every other event to the
Kinesis stream, rejected beacons to a stream of their own (docs/config.md).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import boto3
from botocore.config import Config

__all__ = ["BAD_STREAM", "CLICKS", "ensure_delivery_stream", "routed_banner", "write_config"]

CLICKS = "clicks"  # the demo's Firehose delivery stream (and its S3 bucket)
BAD_STREAM = "bad-events"
UP_CONFIG = """# Written by `spoolship up` (docs/config.md): two routes, a Firehose destination and the bad route.
spool_dir = {spool_dir}

[routing]
field = "type"
default = "events"

[routes.events]
destination = "events"

[routes.clicks]
destination = "clicks"
values = ["click"]

[routes.bad]
destination = "bad-events"
max_spool_bytes = "64MiB"

[destinations.events]
type = "kinesis"
stream = {stream}
endpoint_url = {endpoint}

[destinations.clicks]
type = "firehose"
delivery_stream = "{clicks}"
endpoint_url = {endpoint}

[destinations.bad-events]
type = "kinesis"
stream = "{bad}"
endpoint_url = {endpoint}
"""


def write_config(path: Path, spool_dir: Path, stream: str, endpoint_url: str) -> None:
    def toml(value: str) -> str:
        return json.dumps(value)  # a TOML basic string is a JSON string

    path.write_text(UP_CONFIG.format(spool_dir=toml(str(spool_dir)), stream=toml(stream), endpoint=toml(endpoint_url),
                                     clicks=CLICKS, bad=BAD_STREAM))


def ensure_delivery_stream(session: boto3.Session, region: str | None, endpoint_url: str) -> None:
    """The demo's delivery stream, writing to an S3 bucket of the same name (both in moto)."""
    s3 = session.client("s3", endpoint_url=endpoint_url, region_name=region,
                        config=Config(s3={"addressing_style": "path"}))
    firehose = session.client("firehose", endpoint_url=endpoint_url, region_name=region)
    s3.create_bucket(Bucket=CLICKS)
    if CLICKS not in firehose.list_delivery_streams()["DeliveryStreamNames"]:
        firehose.create_delivery_stream(
            DeliveryStreamName=CLICKS, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/firehose",
                                                "BucketARN": f"arn:aws:s3:::{CLICKS}", "Prefix": "clicks/"})


def routed_banner(exe: str, receiver: str, config: Path, endpoint_url: str, stream: str) -> str:
    """What `up` prints with routes (tests/unit/test_readme.py keeps the README in step)."""
    post = f"curl -X POST {receiver}/v1/events -H"
    hello, click, broken = (shlex.quote(body) for body in ('{"type":"hello","n":1}', '{"type":"click","n":2}',
                                                           '{"type":"click",'))
    return "\n".join([
        "",
        "spoolship is up",
        f"  receiver  {receiver}   config: {config}",
        f"  aws       {endpoint_url}   (embedded moto server: Kinesis, Firehose, S3)",
        f"  routes    events  -> kinesis stream {stream}   (every type but click)",
        f"            clicks  -> firehose {CLICKS} -> s3://{CLICKS}/clicks/   (type click)",
        f"            bad     -> kinesis stream {BAD_STREAM}   (rejected beacons, with their errors)",
        "",
        "Send events:",
        f"  {post} 'Content-Type: application/json' -d {hello}",
        f"  {post} 'Content-Type: application/json' -d {click}",
        f"  {post} 'Content-Type: text/plain' -d {broken}",
        "",
        "Watch them arrive (in another terminal):",
        f"  {exe} peek --config {config} --route events --follow",
        f"  {exe} peek --config {config} --route clicks",
        f"  {exe} peek --config {config} --route bad",
        "",
        "See the spools, and the plan:",
        f"  {exe} status --config {config}",
        f"  {exe} check --config {config}",
        "",
        "Ctrl-C stops everything (the tailer ships what is left first).",
        "",
    ])

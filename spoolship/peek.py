"""Reading a destination back as NDJSON: a Kinesis stream across all shards (deaggregating KPL
records), or the S3 objects a Firehose delivery stream wrote.

For newcomers to see their events land, and for operators to check a destination.
Respects the 5 GetRecords calls per second per shard by pacing each shard.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

from tailer.kpl import deaggregate

__all__ = ["decoded", "delivery_stream_bucket", "peek_delivery_stream", "peek_records"]

PER_SHARD_INTERVAL_SECONDS = 0.2
GZIP_MAGIC = b"\x1f\x8b"


def peek_records(client, stream: str, *, start: str = "TRIM_HORIZON", follow: bool = False,
                 poll_seconds: float = 1.0) -> Iterator[bytes]:
    """Yield the data of every user record; with ``follow``, keep waiting for new ones."""
    iterators: dict[str, str | None] = {}
    known: set[str] = set()

    def discover() -> None:
        for shard in client.list_shards(StreamName=stream)["Shards"]:
            shard_id = shard["ShardId"]
            if shard_id in known:
                continue
            known.add(shard_id)
            iterators[shard_id] = client.get_shard_iterator(
                StreamName=stream, ShardId=shard_id, ShardIteratorType=start)["ShardIterator"]

    discover()
    last_call: dict[str, float] = {}
    while True:
        caught_up = True
        for shard_id, iterator in list(iterators.items()):
            if iterator is None:
                continue
            wait = last_call.get(shard_id, 0) + PER_SHARD_INTERVAL_SECONDS - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            page = client.get_records(ShardIterator=iterator, Limit=10000)
            last_call[shard_id] = time.monotonic()
            iterators[shard_id] = page.get("NextShardIterator")
            for record in page["Records"]:
                for _key, data in deaggregate(record["Data"]):
                    yield data
            if page["Records"] or page.get("MillisBehindLatest", 0) > 0:
                caught_up = False
        if caught_up:
            if not follow:
                return
            time.sleep(poll_seconds)
            discover()


def delivery_stream_bucket(firehose, name: str) -> tuple[str, str]:
    """(bucket, key prefix) of a delivery stream's S3 destination; ValueError if it has none."""
    description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    for destination in description.get("Destinations", []):
        s3 = destination.get("ExtendedS3DestinationDescription") or destination.get("S3DestinationDescription")
        if s3:
            return s3["BucketARN"].split(":::", 1)[-1], s3.get("Prefix") or ""
    raise ValueError(f"delivery stream {name!r} does not deliver to S3: nothing to read back")


def decoded(body: bytes) -> bytes:
    """An object as Firehose wrote it: gzip (``CompressionFormat: GZIP``, one member per object or several)
    is inflated, so that peek prints events, not compressed bytes (routes review, finding 13)."""
    if body[:2] == GZIP_MAGIC:
        return gzip.decompress(body)
    return body


def peek_delivery_stream(firehose, s3, name: str, *, follow: bool = False,
                         poll_seconds: float = 1.0) -> Iterator[bytes]:
    """Yield every line of every S3 object the delivery stream wrote (oldest key first); with
    ``follow``, keep looking for new objects. Firehose objects are the records' bytes one after
    another, and spoolship's records are whole NDJSON lines, so an object's lines are its events."""
    bucket, prefix = delivery_stream_bucket(firehose, name)
    seen: set[str] = set()
    while True:
        fresh = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            fresh += [item["Key"] for item in page.get("Contents", []) if item["Key"] not in seen]
        for key in sorted(fresh):
            seen.add(key)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            yield from decoded(body).splitlines(keepends=True)
        if not follow:
            return
        time.sleep(poll_seconds)

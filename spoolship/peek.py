"""Reading a stream back as NDJSON, across all shards, deaggregating KPL records.

For newcomers to see their events land, and for operators to check a stream.
Respects the 5 GetRecords calls per second per shard by pacing each shard.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from tailer.kpl import deaggregate

__all__ = ["peek_records"]

PER_SHARD_INTERVAL_SECONDS = 0.2


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

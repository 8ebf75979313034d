"""What a shipping loop needs from its destination, and nothing else: a sink and a packer.

The shipper's loop is the same for every destination (DESIGN.md, "Destinations
and routes"): it reads lines, packs them, delivers batches, checkpoints. What
differs lives here, chosen once from :class:`tailer.config.TailerConfig`:

| destination | sink | packer |
| --- | --- | --- |
| Kinesis data stream (``--stream``) | :class:`tailer.kinesis.KinesisSink` | one line per record, or KPL aggregates (``--aggregate``) |
| Firehose delivery stream (``--delivery-stream``) | :class:`tailer.firehose.FirehoseSink` | many lines per record, NDJSON (:mod:`tailer.firehose_packing`) |

Credentials: boto3's chain, or a role assumed with it (``--role-arn``, :mod:`tailer.credentials`),
resolved again when the service calls them stale (rotated keys).
"""

from __future__ import annotations

from .aws import make_session
from .config import FIREHOSE, TailerConfig
from .credentials import CredentialRenewal, assume_role_session
from .firehose import FirehoseSink
from .firehose_packing import NdjsonPacker
from .kinesis import KinesisSink
from .packing import AggregatingPacker, DeadLetter, PlainPacker
from .partition import make_key_function
from .placement import PlacementCheck
from .shardmap import ShardMap
from .sink import Sink

__all__ = ["describe", "make_packer", "open_sink"]


def open_sink(config: TailerConfig) -> Sink:
    """The sink of ``config``'s destination (may raise botocore's NoRegionError / BotoCoreError)."""
    session, region = _session(config)
    kind = FirehoseSink if config.destination == FIREHOSE else KinesisSink
    return kind(config.stream, endpoint_url=config.endpoint_url, region=region, session=session,
                max_connections=config.concurrency + 2, call_deadline_seconds=config.call_deadline_seconds,
                renewal=CredentialRenewal(lambda: _session(config)[0]))


def _session(config: TailerConfig):
    """(session, region): boto3's chain resolved now, or the role assumed with it."""
    session, region = make_session(config.endpoint_url, config.region)
    role = config.role
    if role is not None:
        session = assume_role_session(session, role, region)
    return session, region


def make_packer(config: TailerConfig, sink: Sink, dead_letter: DeadLetter, shard_map: ShardMap | None = None):
    """(packer, placement check or None) for ``config``'s destination."""
    if config.destination == FIREHOSE:
        return NdjsonPacker(dead_letter, record_max_bytes=config.firehose_record_bytes,
                            max_batch_bytes=config.max_batch_bytes), None
    key_fn = make_key_function(config.partition_key)
    if not config.aggregate:
        return PlainPacker(key_fn, dead_letter, max_batch_bytes=config.max_batch_bytes), None
    placement = None
    if config.partition_key != "random":
        shard_map = shard_map or ShardMap(sink.list_shards)
        placement = PlacementCheck(shard_map, config.aggregate_max_bytes)
    packer = AggregatingPacker(key_fn, dead_letter, max_bytes=config.aggregate_max_bytes,
                               shard_map=shard_map, max_batch_bytes=config.max_batch_bytes)
    return packer, placement


def describe(config: TailerConfig) -> str:
    """A destination in words, for logs and ``spoolship check``."""
    if config.destination == FIREHOSE:
        what = f"firehose {config.stream}"
    else:
        what = f"kinesis {config.stream}"
        if config.aggregate:
            what += " (aggregated)"
        if config.partition_key != "random":
            what += f" keys {config.partition_key}"
    if config.role_arn:
        what += f" as {config.role_arn}"
    return what

"""`spoolship tail`: the sidecar that ships the spool to a Kinesis stream."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click
from botocore.exceptions import BotoCoreError, NoRegionError

from spooler import CheckpointCorrupt, CheckpointLocked
from tailer import KinesisSink, MetricsServer, Shipper, TailerConfig, TailerMetrics
from tailer.aws import make_session
from tailer.config import (
    DEFAULT_AGGREGATE_MAX_BYTES,
    DEFAULT_CHECKPOINT_INTERVAL_SECONDS,
    DEFAULT_CONCURRENCY,
    DEFAULT_DRAIN_TIMEOUT_SECONDS,
    DEFAULT_LINGER_SECONDS,
    DEFAULT_MAX_BACKOFF_SECONDS,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_PERMANENT_RETRY_SECONDS,
    DEFAULT_POLL_INTERVAL_SECONDS,
)
from tailer.follower import SpoolFollower

from ..logs import configure_logging
from ..params import COMMAND_SETTINGS, DURATION, SIZE, option

__all__ = ["tail"]

log = logging.getLogger(__name__)


@click.command(context_settings=COMMAND_SETTINGS)
@option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
        help="The spool directory shared with the receiver.")
@option("--stream", required=True, help="Kinesis data stream name.")
@option("--endpoint-url", help="Kinesis-API endpoint (moto, kinesalite, LocalStack); default: AWS.")
@option("--region", help="AWS region; default: boto3's (AWS_REGION / AWS_DEFAULT_REGION / profile).")
@option("--aggregate/--no-aggregate", default=False, help="Pack many lines per record (KPL format).")
@option("--aggregate-max-bytes", type=SIZE, default=DEFAULT_AGGREGATE_MAX_BYTES,
        help="Largest aggregated record.")
@option("--partition-key", default="random", help="random, hash, or field:<dotted.path>.")
@option("--concurrency", type=click.IntRange(min=1), default=DEFAULT_CONCURRENCY,
        help="PutRecords calls in flight.")
@option("--max-batch-bytes", type=SIZE, default=DEFAULT_MAX_BATCH_BYTES,
        help="Largest PutRecords call (data + keys; at most 5 MiB).")
@option("--linger", "linger_seconds", type=DURATION, default=DEFAULT_LINGER_SECONDS,
        help="Longest wait to fill a batch (seconds).")
@option("--poll-interval", "poll_interval_seconds", type=DURATION, default=DEFAULT_POLL_INTERVAL_SECONDS,
        help="Rescan the spool this often (safety net; finds orphans).")
@option("--polling/--no-polling", default=False, help="Poll instead of inotify (NFS and the like).")
@option("--checkpoint-interval", "checkpoint_interval_seconds", type=DURATION,
        default=DEFAULT_CHECKPOINT_INTERVAL_SECONDS, help="Longest time between checkpoint writes.")
@option("--archive-dir", type=click.Path(file_okay=False, path_type=Path),
        help="Move shipped segments here (gzipped) instead of deleting them.")
@option("--archive-max-bytes", type=SIZE, help="Prune the archive, oldest first, past this size.")
@option("--archive-max-age", "archive_max_age_seconds", type=DURATION, help="Prune archives older than this.")
@option("--archive-gzip/--no-archive-gzip", default=True, help="Gzip archived segments.")
@option("--metrics-host", default="127.0.0.1", help="Address for /metrics and /healthz (0.0.0.0 in a pod).")
@option("--metrics-port", type=int, help="Port for /metrics and /healthz (off when unset).")
@option("--drain-timeout", "drain_timeout_seconds", type=DURATION, default=DEFAULT_DRAIN_TIMEOUT_SECONDS,
        help="After SIGTERM, keep shipping this long at most.")
@option("--max-backoff", "max_backoff_seconds", type=DURATION, default=DEFAULT_MAX_BACKOFF_SECONDS,
        help="Longest wait between retries.")
@option("--permanent-retry", "permanent_retry_seconds", type=DURATION, default=DEFAULT_PERMANENT_RETRY_SECONDS,
        help="How often to try again a call the endpoint refuses for good (missing stream, access denied, "
             "a proxy's 404); nothing is dropped meanwhile.")
@option("--exit-when-empty/--no-exit-when-empty", default=False,
        help="Exit 0 once every segment is sealed, shipped, checkpointed and deleted (the scale-down rescue "
             "of a spool no receiver writes to); honours the checkpoint, unlike replay.")
@option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def tail(log_level: str, **options) -> None:
    """Follow the spool and ship every line to a Kinesis stream."""
    configure_logging(log_level)
    try:
        config = TailerConfig(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    config.spool_dir.mkdir(parents=True, exist_ok=True)
    try:
        session, region = make_session(config.endpoint_url, config.region)
        sink = KinesisSink(config.stream, endpoint_url=config.endpoint_url, region=region, session=session,
                           max_connections=config.concurrency + 2)
    except NoRegionError:
        raise click.UsageError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION") from None
    except BotoCoreError as exc:
        raise click.ClickException(f"cannot set up the Kinesis client: {exc}") from None
    metrics = TailerMetrics()
    try:
        shipper = Shipper(config, sink, metrics)
    except (CheckpointLocked, CheckpointCorrupt) as exc:
        raise click.ClickException(str(exc)) from None
    server = None
    if config.metrics_port is not None:
        server = MetricsServer(metrics, config.metrics_host, config.metrics_port)
    if server:
        log.info("metrics listening", extra={"host": config.metrics_host, "port": server.port})
    stop = threading.Event()

    def on_signal(_signum, _frame) -> None:
        stop.set()
        shipper.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    follower = SpoolFollower(config.spool_dir, shipper.request_rescan, polling=config.polling,
                             poll_interval=config.poll_interval_seconds)
    follower.start()
    try:
        code = shipper.run(stop)
    finally:
        follower.stop()
        if server:
            server.close()
        sink.close()
    sys.exit(code)

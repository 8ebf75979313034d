"""`spoolship up`: run the whole pipeline locally."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from ..params import COMMAND_SETTINGS, DURATION, option
from ..up import LocalPipeline, UpOptions

__all__ = ["up"]


@click.command(context_settings=COMMAND_SETTINGS)
@option("--host", default="127.0.0.1", help="Address for the receiver.")
@option("--port", type=int, default=8080, help="Receiver port (0 = any free port).")
@option("--kinesis-port", type=int, default=4567,
        help="Embedded AWS-API server port (moto: Kinesis, Firehose, S3; 0 = any).")
@option("--stream", default="events", help="Stream to create and ship to (the default route's).")
@option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("spool"),
        help="Spool directory (created if missing).")
@option("--endpoint-url", help="Use this Kinesis-API server instead of the embedded one (one stream, no routes).")
@option("--aws", is_flag=True, help="Use real AWS (boto3's credentials and region); the stream must exist.")
@option("--region", help="AWS region.")
@option("--shards", type=click.IntRange(min=1), default=1, help="Shards of a stream created here.")
@option("--drain-timeout", "drain_timeout_seconds", type=DURATION, default=30.0,
        help="How long the tailer may take to ship what is left at Ctrl-C.")
@option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
        help="Log level of the receiver and the tailer.")
def up(**options) -> None:
    """The whole pipeline on this machine: an AWS-API server, a receiver and a tailer, with two routes
    (Kinesis, and Firehose to S3) and the bad route (docs/config.md)."""
    pipeline = LocalPipeline(UpOptions(**options))
    signal.signal(signal.SIGTERM, pipeline.request_stop)
    signal.signal(signal.SIGINT, pipeline.request_stop)
    pipeline.start()
    click.echo(pipeline.banner())
    try:
        pipeline.wait()
    finally:
        click.echo("stopping: receiver, then the tailer ships what is left ...", err=True)
        code = pipeline.stop()
    click.echo("stopped." if code == 0 else "stopped with errors.", err=True)
    sys.exit(code)

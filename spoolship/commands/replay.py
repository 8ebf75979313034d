"""`spoolship replay`: re-send spool segments or archives to a stream."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from botocore.exceptions import BotoCoreError, NoRegionError

from tailer import KinesisSink
from tailer.aws import make_session
from tailer.config import (
    DEFAULT_AGGREGATE_MAX_BYTES,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_BATCH_BYTES,
    check_stream_name,
)
from tailer.credentials import CredentialRenewal
from tailer.partition import parse_partition_key
from tailer.replay import Replayer, ReplayOptions, check_readable

from ..logs import configure_logging
from ..params import COMMAND_SETTINGS, SIZE, option

__all__ = ["replay"]


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@option("--stream", required=True, help="Kinesis data stream to send to.")
@option("--endpoint-url", help="Kinesis-API endpoint; default: AWS.")
@option("--region", help="AWS region; default: boto3's.")
@option("--from-offset", type=SIZE, default=0, help="Start each file at this byte (of its uncompressed content).")
@option("--rate", type=click.FloatRange(min=0, min_open=True), help="At most this many events per second.")
@option("--dry-run", is_flag=True, help="Read, count and validate JSON; send nothing.")
@option("--aggregate/--no-aggregate", default=False, help="Pack many lines per record (KPL format).")
@option("--aggregate-max-bytes", type=SIZE, default=DEFAULT_AGGREGATE_MAX_BYTES, help="Largest aggregated record.")
@option("--partition-key", default="random", help="random, hash, or field:<dotted.path>.")
@option("--concurrency", type=click.IntRange(min=1), default=DEFAULT_CONCURRENCY, help="Calls in flight.")
@option("--max-batch-bytes", type=SIZE, default=DEFAULT_MAX_BATCH_BYTES, help="Largest PutRecords call.")
@option("--progress/--no-progress", default=None, help="Progress bar (default: on when stderr is a terminal).")
@option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def replay(paths: tuple[Path, ...], stream: str, endpoint_url: str | None, region: str | None,
           progress: bool | None, as_json: bool, **options) -> None:
    """Re-send spool segments or archive files (plain or .gz); never modifies them."""
    configure_logging("warning")
    problems = [why for why in map(check_readable, paths) if why]
    if problems:
        raise click.UsageError("cannot replay:\n  " + "\n  ".join(problems))
    try:
        parse_partition_key(options["partition_key"])
        check_stream_name(stream)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    opts = ReplayOptions(**options)
    sink = None
    if not opts.dry_run:
        try:
            session, region = make_session(endpoint_url, region)
            sink = KinesisSink(stream, endpoint_url=endpoint_url, region=region, session=session,
                               max_connections=opts.concurrency + 2,
                               renewal=CredentialRenewal(lambda: make_session(endpoint_url, region)[0]))
        except NoRegionError:
            raise click.UsageError("no AWS region: pass --region or set AWS_REGION") from None
        except BotoCoreError as exc:
            raise click.ClickException(f"cannot set up the Kinesis client: {exc}") from None
    show_bar = sys.stderr.isatty() if progress is None else progress
    total = sum(p.stat().st_size for p in paths)
    summary = _run(Replayer, sink, opts, list(paths), total, show_bar)
    if sink is not None:
        sink.close()
    _print_summary(summary, opts, as_json)
    if not summary.ok:
        sys.exit(1)


def _run(replayer_cls, sink, opts, paths, total, show_bar):
    if not show_bar:
        return replayer_cls(sink, opts).run(paths)
    done_before = [0]
    with click.progressbar(length=total, label="replaying", file=sys.stderr, show_eta=True,
                           item_show_func=lambda e: f"{e:,} events" if e is not None else "") as bar:
        finished = [0]

        def progress(file_bytes: int, events: int) -> None:
            position = finished[0] + file_bytes
            bar.update(max(0, position - done_before[0]), events)
            done_before[0] = max(done_before[0], position)

        replayer = replayer_cls(sink, opts, progress=progress)
        summary = replayer.run(paths)
        bar.update(total - done_before[0])
    return summary


def _print_summary(summary, opts, as_json: bool) -> None:
    doc = {
        "dry_run": opts.dry_run, "files": summary.files, "events": summary.events, "bytes": summary.bytes,
        "records": summary.records, "batches": summary.batches, "retries": summary.retries,
        "invalid_json": summary.invalid_json, "too_large": summary.too_large, "torn": summary.torn,
        "skipped_head_bytes": summary.skipped_head_bytes, "skipped_files": summary.skipped_files,
        "failed_records": summary.failed_records,
        "elapsed_seconds": summary.elapsed_seconds, "error": summary.error, "ok": summary.ok,
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    verb = "would send" if opts.dry_run else "sent"
    rate = summary.events / summary.elapsed_seconds if summary.elapsed_seconds else 0
    click.echo(f"{verb} {summary.events:,} events from {summary.files} file(s) ({summary.bytes:,} bytes read)"
               + ("" if opts.dry_run else f" in {summary.records:,} records, {summary.batches:,} calls")
               + f"; {summary.elapsed_seconds:.1f}s, {rate:,.0f} events/s")
    if opts.dry_run:
        click.echo(f"invalid JSON lines: {summary.invalid_json:,}")
    if summary.retries:
        click.echo(f"retried: {summary.retries:,}")
    if summary.skipped_head_bytes:
        click.echo(f"--from-offset fell inside a line: skipped {summary.skipped_head_bytes} bytes to the next line")
    for skipped in summary.skipped_files:
        click.echo(f"file skipped: {skipped}", err=True)
    for torn in summary.torn:
        click.echo(f"torn last line, not sent: {torn}")
    if summary.too_large:
        click.echo(f"lines over the 1 MiB record limit, not sent: {summary.too_large}")
    if summary.failed_records:
        click.echo(f"records Kinesis rejected: {summary.failed_records}", err=True)
    if summary.error:
        click.echo(f"error: {summary.error}", err=True)

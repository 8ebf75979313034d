"""`spoolship peek`: print a stream's records as NDJSON (deaggregating KPL records)."""

from __future__ import annotations

import sys

import click
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from tailer.aws import make_session

from ..params import COMMAND_SETTINGS, option
from ..peek import peek_records

__all__ = ["peek"]


@click.command(context_settings=COMMAND_SETTINGS)
@option("--stream", required=True, help="Kinesis data stream to read.")
@option("--endpoint-url", help="Kinesis-API endpoint; default: AWS.")
@option("--region", help="AWS region; default: boto3's.")
@option("--from", "start", type=click.Choice(["trim-horizon", "latest"]), default="trim-horizon",
        help="Start at the oldest record, or only show new ones.")
@option("--follow", "-f", is_flag=True, help="Keep waiting for new records (Ctrl-C to stop).")
@option("--limit", type=click.IntRange(min=1), help="Stop after this many events.")
def peek(stream: str, endpoint_url: str | None, region: str | None, start: str, follow: bool,
         limit: int | None) -> None:
    """Print the events in a stream, one JSON line each, across all shards."""
    try:
        session, region = make_session(endpoint_url, region)
        client = session.client("kinesis", endpoint_url=endpoint_url, region_name=region)
        out = sys.stdout.buffer
        records = peek_records(client, stream, start=start.upper().replace("-", "_"), follow=follow)
        for shown, data in enumerate(records, start=1):
            out.write(data if data.endswith(b"\n") else data + b"\n")
            out.flush()
            if limit and shown >= limit:
                return
    except KeyboardInterrupt:
        return
    except NoRegionError:
        raise click.UsageError("no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as exc:
        raise click.ClickException(exc.response.get("Error", {}).get("Message") or str(exc)) from None
    except BotoCoreError as exc:
        raise click.ClickException(str(exc)) from None

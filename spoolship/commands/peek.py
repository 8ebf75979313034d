"""`spoolship peek`: print what reached a destination as NDJSON.

A Kinesis stream (``--stream``; KPL records deaggregated), a Firehose delivery
stream (``--delivery-stream``: the S3 objects it wrote), or a route of a config
file (``--config F --route R``: that route's destination, with its endpoint,
region and role).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from tailer.aws import make_session
from tailer.credentials import RoleSettings, assume_role_session

from ..config_file import ConfigError, load_plan
from ..params import COMMAND_SETTINGS, option
from ..peek import peek_delivery_stream, peek_records

__all__ = ["peek"]


@click.command(context_settings=COMMAND_SETTINGS)
@option("--stream", help="Kinesis data stream to read.")
@option("--delivery-stream", help="Firehose delivery stream whose S3 objects to read.")
@option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="SPOOLSHIP_CONFIG", help="Config file: read the destination of --route.")
@option("--route", help="With --config: the route whose destination to read.")
@option("--endpoint-url", help="Kinesis-, Firehose- and S3-API endpoint (moto, LocalStack); default: AWS.")
@option("--region", help="AWS region; default: boto3's.")
@option("--from", "start", type=click.Choice(["trim-horizon", "latest"]), default="trim-horizon",
        help="Kinesis: start at the oldest record, or only show new ones.")
@option("--follow", "-f", is_flag=True, help="Keep waiting for new records (Ctrl-C to stop).")
@option("--limit", type=click.IntRange(min=1), help="Stop after this many events.")
def peek(stream: str | None, delivery_stream: str | None, config_file: Path | None, route: str | None,
         endpoint_url: str | None, region: str | None, start: str, follow: bool, limit: int | None) -> None:
    """Print the events in a destination, one JSON line each: a stream across all shards, or a
    delivery stream's S3 objects."""
    kind, name, endpoint_url, region, role = _target(stream, delivery_stream, config_file, route, endpoint_url,
                                                     region)
    try:
        session, region = make_session(endpoint_url, region)
        if role is not None:
            session = assume_role_session(session, role, region)
        if kind == "firehose":
            firehose = session.client("firehose", endpoint_url=endpoint_url, region_name=region)
            s3 = session.client("s3", endpoint_url=endpoint_url, region_name=region,
                                config=Config(s3={"addressing_style": "path"}) if endpoint_url else None)
            records = peek_delivery_stream(firehose, s3, name, follow=follow)
        else:
            client = session.client("kinesis", endpoint_url=endpoint_url, region_name=region)
            records = peek_records(client, name, start=start.upper().replace("-", "_"), follow=follow)
        out = sys.stdout.buffer
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
    except (BotoCoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _target(stream, delivery_stream, config_file, route, endpoint_url, region):
    """(kind, name, endpoint, region, role) of what to read."""
    if config_file is None:
        if route is not None:
            raise click.UsageError("--route needs --config")
        if (stream is None) == (delivery_stream is None):
            raise click.UsageError("give one of --stream, --delivery-stream, or --config with --route")
        return ("firehose" if delivery_stream else "kinesis"), stream or delivery_stream, endpoint_url, region, None
    if stream or delivery_stream or route is None:
        raise click.UsageError("with --config, name the route to read with --route (and no --stream)")
    try:
        plan = load_plan(config_file, Path("."), check_destinations=False)  # spools are not read here
        destination = plan.destinations[plan.route(route).destination]
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyError:
        raise click.UsageError(f"--route {route}: not a route of {config_file}") from None
    settings = destination.settings
    role = None
    if settings.get("role_arn"):
        role = RoleSettings(settings["role_arn"], settings.get("external_id"),
                            settings.get("role_session_name", "spoolship"), settings.get("sts_endpoint_url"))
    return (destination.kind, destination.stream, settings.get("endpoint_url", endpoint_url),
            settings.get("region", region), role)

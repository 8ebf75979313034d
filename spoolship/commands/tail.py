"""`spoolship tail`: the sidecar that ships the spool to a Kinesis stream or a Firehose delivery stream.

With ``--config`` it runs one shipping loop per route (tailer/fleet.py), each to its route's destination.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click
from botocore.exceptions import BotoCoreError, NoRegionError
from click.core import ParameterSource

from spooler import CheckpointCorrupt, CheckpointLocked
from tailer import MetricsServer, Shipper, TailerConfig, TailerMetrics
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
from tailer.deadline import DEFAULT_CALL_DEADLINE_SECONDS
from tailer.destination import open_sink
from tailer.fleet import Fleet, Loop
from tailer.follower import SpoolFollower

from ..config_file import ConfigError, load_plan
from ..logs import configure_logging
from ..params import COMMAND_SETTINGS, DURATION, SIZE, option
from ..strays import StrayGauges, Strays, describe_strays

__all__ = ["tail"]

log = logging.getLogger(__name__)
HEALTH_MARGIN_SECONDS = 15.0


def health_stale_seconds(configs) -> float:
    """/healthz: a loop that has not turned, or a call that has run, for longer than any call may take (its
    ``--call-deadline``) plus a margin is stalled — never a call still within its deadline (the kubelet
    would restart a tailer that is only waiting for a slow answer)."""
    return max(c.call_deadline_seconds for c in configs) + HEALTH_MARGIN_SECONDS


@click.command(context_settings=COMMAND_SETTINGS)
@option("--spool-dir", type=click.Path(file_okay=False, path_type=Path),
        help="The spool directory shared with the receiver (with --config: where the route spools are, "
             "winning over the file's spool_dir).")
@option("--stream", help="Kinesis data stream name (one destination; or --delivery-stream, or --config).")
@option("--delivery-stream", help="Firehose delivery stream name, instead of --stream.")
@option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="SPOOLSHIP_CONFIG",
        help="Config file of routes and destinations (TOML, docs/config.md): one shipping loop per route. "
             "The other options apply to every loop unless its destination sets them.")
@option("--route", "routes", multiple=True, envvar="SPOOLSHIP_ROUTE",
        help="With --config: ship only this route (repeatable), e.g. one tailer container per destination.")
@option("--endpoint-url", help="Kinesis- or Firehose-API endpoint (moto, kinesalite, LocalStack); default: AWS.")
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
@option("--call-deadline", "call_deadline_seconds", type=DURATION, default=DEFAULT_CALL_DEADLINE_SECONDS,
        help="Longest a PutRecords call may take, answer included: a trickling answer is cut off and the "
             "call retried.")
@option("--role-arn", help="Sign with this IAM role's credentials (AssumeRole, refreshed before they expire), "
        "assumed with boto3's usual credentials (IRSA, instance role, env): for a stream in another account.")
@option("--external-id", help="The ExternalId the role's trust policy asks for.")
@option("--role-session-name", default="spoolship", help="The AssumeRole session name (seen in CloudTrail).")
@option("--sts-endpoint-url", help="STS endpoint for AssumeRole; default: the region's.")
@option("--exit-when-empty/--no-exit-when-empty", default=False,
        help="Exit 0 once every segment is sealed, shipped, checkpointed and deleted (the scale-down rescue "
             "of a spool no receiver writes to); honours the checkpoint, unlike replay.")
@option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def tail(log_level: str, config_file: Path | None, routes: tuple[str, ...], delivery_stream: str | None,
         **options) -> None:
    """Follow the spool and ship every line to a Kinesis stream or a Firehose delivery stream; with
    --config, every route's spool to its destination."""
    configure_logging(log_level)
    configs, strays = _configs(click.get_current_context(), config_file, routes, delivery_stream, options)
    for config in configs:
        config.spool_dir.mkdir(parents=True, exist_ok=True)
    routed = config_file is not None or len(configs) > 1  # stray loops (spoolship/strays.py) are labelled too
    registry = None
    loops, sinks = [], []
    try:
        for config in configs:
            sink = _open_sink(config)
            sinks.append(sink)
            metrics = TailerMetrics(config.route if routed else None, registry=registry)
            registry = metrics.registry
            try:
                shipper = Shipper(config, sink, metrics)
            except (CheckpointLocked, CheckpointCorrupt) as exc:
                raise click.ClickException(f"route {config.route}: {exc}" if routed else str(exc)) from None
            follower = SpoolFollower(config.spool_dir, shipper.request_rescan, polling=config.polling,
                                     poll_interval=config.poll_interval_seconds)
            loops.append(Loop(config.route, shipper, follower))
    except BaseException:
        for loop in loops:
            loop.shipper.close()
        for sink in sinks:
            sink.close()
        raise
    first = configs[0]
    StrayGauges(strays, loops[0].shipper.metrics.registry)
    server = None
    if first.metrics_port is not None:
        server = MetricsServer([loop.shipper.metrics for loop in loops], first.metrics_host, first.metrics_port,
                               stale_seconds=health_stale_seconds(configs))
        log.info("metrics listening", extra={"host": first.metrics_host, "port": server.port})
    stop = threading.Event()
    fleet = Fleet(loops)

    def on_signal(_signum, _frame) -> None:
        stop.set()
        fleet.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        code = fleet.run(stop)
        if code == 0 and first.exit_when_empty:
            code = _drained_everywhere(strays)
    finally:
        if server:
            server.close()
        for sink in sinks:
            sink.close()
    if code != 0:
        # Given up at the drain timeout (the checkpoint is saved): a delivery thread still blocked (a hung
        # credential fetch, a call no deadline reaches) must not hold the exit — sys.exit's atexit hook of
        # concurrent.futures would join it. Flush the logs, then leave at once.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _drained_everywhere(strays: Strays) -> int:
    """``--exit-when-empty`` says drained only if no segment is left anywhere under the spool root."""
    left = strays.left_behind()
    if not left:
        return 0
    log.error("segments left on the claim after every loop finished; not drained",
              extra={"left": describe_strays(strays.root, left)})
    return 1


def _configs(ctx: click.Context, config_file: Path | None, routes: tuple[str, ...], delivery_stream: str | None,
             options: dict) -> tuple[list[TailerConfig], Strays]:
    """One TailerConfig per loop: the flags' single destination, or every route of --config; and one per
    directory of segments that no configured spool owns (spoolship/strays.py)."""
    role = {key: options.pop(key) for key in ("role_arn", "external_id", "role_session_name", "sts_endpoint_url")}
    stream, spool_dir = options.pop("stream"), options.pop("spool_dir")
    try:
        if config_file is None:
            if routes:
                raise click.UsageError("--route needs --config")
            if (stream is None) == (delivery_stream is None):
                raise click.UsageError("give one of --stream (Kinesis), --delivery-stream (Firehose) or --config")
            if spool_dir is None:
                raise click.UsageError("--spool-dir is required (or --config with a spool_dir)")
            config = TailerConfig(spool_dir=spool_dir, stream=stream or delivery_stream,
                                  destination="firehose" if delivery_stream else "kinesis", **options, **role)
            strays = Strays(spool_dir, [spool_dir], _archives(options), ships_strays=True)
            return [config, *strays.loop_configs(config)], strays
        if stream or delivery_stream:
            raise click.UsageError("--stream and --delivery-stream do not go with --config: its routes name "
                                   "their destinations")
        given = ctx.get_parameter_source("spool_dir") not in (None, ParameterSource.DEFAULT)
        plan = load_plan(config_file, spool_dir if given else None)
        unknown = sorted(set(routes) - {route.name for route in plan.every_route})
        if unknown:
            raise click.UsageError(f"--route {', '.join(unknown)}: not a route of {config_file}")
        common = {**options, **({"role_arn": role["role_arn"]} if role["role_arn"] else {})}
        given = {k: v for k, v in role.items() if k != "role_arn" and v is not None
                 and ctx.get_parameter_source(k) not in (None, ParameterSource.DEFAULT)}
        if given and not role["role_arn"] and not plan.assumes_a_role(routes):
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(given))
            raise click.UsageError(f"{flags}: no route of {config_file} assumes a role (no destination sets "
                                   "role_arn) and no --role-arn is given")
        chosen = plan.tailer_configs(routes, role=given, **common)
        default = next((c for c in chosen if c.route == plan.default), None)
        strays = Strays(plan.spool_dir, [r.spool_dir for r in plan.every_route], _archives(options),
                        ships_strays=default is not None)
        return chosen + (strays.loop_configs(default) if default else []), strays
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _archives(options: dict) -> list[Path]:
    return [options["archive_dir"]] if options.get("archive_dir") is not None else []


def _open_sink(config: TailerConfig):
    try:
        return open_sink(config)
    except NoRegionError:
        raise click.UsageError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION") from None
    except BotoCoreError as exc:
        raise click.ClickException(f"cannot set up the {config.destination} client: {exc}") from None
    except ValueError as exc:  # e.g. --role-arn without source credentials: a usage error (exit 2), named
        raise click.UsageError(f"route {config.route}: {exc}" if config.route != "default" else str(exc)) from None

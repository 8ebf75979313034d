"""`spoolship receive`: run the HTTP receiver (one process, or a supervisor of N workers)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from receiver.auth import ApiKeys, KeyFileError
from receiver.body_buffers import DEFAULT_MAX_BUFFERED_BODY_BYTES
from receiver.config import (
    DEFAULT_IDLE_TIMEOUT_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_INFLATED_BYTES,
    DEFAULT_MAX_PARSE_BYTES,
    DEFAULT_PORT,
    DEFAULT_READ_TIMEOUT_SECONDS,
    DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
    DEFAULT_THREADS,
    ReceiverConfig,
)
from receiver.validation import EventValidator, SchemaError
from spooler import FsyncPolicy
from spooler.config import (
    DEFAULT_FSYNC_INTERVAL_SECONDS,
    DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_MIN_FREE_BYTES,
    DEFAULT_SEGMENT_AGE_SECONDS,
    DEFAULT_SEGMENT_BYTES,
)

from ..logs import configure_logging
from ..params import COMMAND_SETTINGS, DURATION, SIZE, option

__all__ = ["receive", "worker_main"]


def worker_main(config: ReceiverConfig, index: int, log_level: str = "info") -> None:
    """Entry point of one spawned worker process."""
    from receiver.server import serve

    configure_logging(log_level)
    _pin_malloc()
    sys.exit(serve(config, worker=index, supervised=True))


def _pin_malloc() -> None:
    """Freed request buffers leave the worker (receiver/malloc.py): its RSS follows --max-parse-bytes."""
    from receiver.malloc import pin_malloc

    if not pin_malloc():
        logging.getLogger(__name__).warning("malloc thresholds not pinned: not glibc; RSS may stay at its peak")


@click.command(context_settings=COMMAND_SETTINGS)
@option("--spool-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Spool directory on a local disk (created if missing); with --config, where the route "
                   "spools are (winning over the file's spool_dir).")
@option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              envvar="SPOOLSHIP_CONFIG",
              help="Config file of routes (TOML, docs/config.md): events go to a spool per route by a field's "
                   "value; the bad route keeps rejected requests.")
@option("--invalid", type=click.Choice(["beacons", "keep", "drop"]), default="beacons",
              help="Which rejected requests (unparseable, or failing the schema) also go to the bad route: "
                   "text/plain beacons, all, or none. The client gets its 400 either way.")
@option("--client-ip-field", help="Stamp each event with the client's IP address under this field "
              "(personal data: see docs/http-api.md). Off when unset.")
@option("--user-agent-field", help="Stamp each event with the User-Agent under this field (personal data). "
              "Off when unset.")
@option("--trusted-proxies", multiple=True,
              help="CIDR of a proxy in front (repeatable, or comma-separated) whose X-Forwarded-For is "
                   "believed for --client-ip-field; without it the header is ignored.")
@option("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 in a container).")
@option("--port", type=int, default=DEFAULT_PORT, help="Port to listen on (0 = any free port).")
@option("--schema", "schema_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="JSON Schema every event must match (default: any JSON object).")
@option("--workers", type=click.IntRange(min=1), default=1, help="Processes sharing the port.")
@option("--threads", type=click.IntRange(min=1), default=DEFAULT_THREADS, help="Threads per worker.")
@option("--segment-bytes", type=SIZE, default=DEFAULT_SEGMENT_BYTES, help="Seal a segment at this size.")
@option("--segment-age", "segment_age_seconds", type=DURATION, default=DEFAULT_SEGMENT_AGE_SECONDS,
              help="Seal a segment at this age (seconds).")
@option("--max-spool-bytes", type=SIZE, default=DEFAULT_MAX_SPOOL_BYTES,
              help="Refuse appends (503) past this many bytes of segments.")
@option("--min-free-bytes", type=SIZE, default=DEFAULT_MIN_FREE_BYTES,
              help="Refuse appends (503) when the disk has less free space.")
@option("--fsync", type=click.Choice([p.value for p in FsyncPolicy]), default=FsyncPolicy.INTERVAL.value,
              help="When appends are forced to disk.")
@option("--fsync-interval", "fsync_interval_seconds", type=DURATION, default=DEFAULT_FSYNC_INTERVAL_SECONDS,
              help="Seconds between fsyncs with --fsync interval.")
@option("--api-key-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="File of accepted API keys, one per line; requests without one get 401.")
@option("--cors-origin", "cors_origins", multiple=True,
              help="Origin allowed to post from a browser (repeatable, or *).")
@option("--stamp/--no-stamp", default=True, help="Add a unique _id and _received_at to each event.")
@option("--id-field", default="_id", help="Field for the event id (a client-sent one is kept).")
@option("--received-at-field", default="_received_at", help="Field for the receive time.")
@option("--max-body-bytes", type=SIZE, default=DEFAULT_MAX_BODY_BYTES, help="Largest request body.")
@option("--max-inflated-bytes", type=SIZE, default=DEFAULT_MAX_INFLATED_BYTES,
              help="Largest body after gzip inflation.")
@option("--max-event-bytes", type=SIZE, default=DEFAULT_MAX_EVENT_BYTES,
              help="Largest single event as stored, with its stamps (at most 1,044,480: one Kinesis record).")
@option("--max-events", type=click.IntRange(min=1), default=DEFAULT_MAX_EVENTS,
              help="Most events in one request.")
@option("--max-depth", type=click.IntRange(min=1), default=DEFAULT_MAX_DEPTH,
              help="Deepest JSON nesting in an event (at most 254).")
@option("--max-parse-bytes", type=SIZE, default=DEFAULT_MAX_PARSE_BYTES,
              help="Memory a worker may spend on request bodies in flight, estimated before parsing: "
                   "a body needing more gets 413; one that does not fit beside others, 503.")
@option("--max-buffered-body-bytes", type=SIZE, default=DEFAULT_MAX_BUFFERED_BODY_BYTES,
              help="Request bodies a worker holds while they arrive and wait for a thread (up to 8 MiB of it in "
                   "memory, the rest in temp files under $TMPDIR); a body that would pass it gets 503 + "
                   "Retry-After when its headers end. Size the temp volume for workers x this.")
@option("--shutdown-delay", "shutdown_delay_seconds", type=DURATION, default=0.0,
              help="After SIGTERM, keep serving (unready) this long before draining.")
@option("--shutdown-timeout", "shutdown_timeout_seconds", type=DURATION,
              default=DEFAULT_SHUTDOWN_TIMEOUT_SECONDS, help="Longest wait for requests in flight.")
@option("--idle-timeout", "idle_timeout_seconds", type=DURATION, default=DEFAULT_IDLE_TIMEOUT_SECONDS,
              help="Close a keep-alive connection idle this long; keep it above the proxy's keep-alive "
                   "(ingress-nginx and AWS ALB: 60 s), or the proxy may reuse a closing one (502).")
@option("--read-timeout", "read_timeout_seconds", type=DURATION, default=DEFAULT_READ_TIMEOUT_SECONDS,
              help="Close a connection whose request headers are not complete this long after their first "
                   "byte, or whose body then comes slower than 1 KiB/s over such a window (slowloris).")
@option("--probe-port", type=click.IntRange(min=0, max=65535), default=None,
              help="Also serve /healthz, /readyz and /metrics on this port, which a flood of clients on "
                   "--port cannot starve; /metrics then leaves --port. Default: probes on --port only.")
@option("--allow-sync/--no-allow-sync", default=False,
              help="Honour ?sync=1 / X-Spoolship-Sync (fsync before the 201) from clients with a valid key "
                   "(every client without --api-key-file); never under --fsync never.")
@option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def receive(log_level: str, config_file: Path | None, **options) -> None:
    """Run the HTTP receiver: validate events, append them to the spool (or each route's), answer 201."""
    configure_logging(log_level)
    try:
        if config_file is not None:
            options = _with_routes(click.get_current_context(), config_file, options)
        elif options["spool_dir"] is None:
            raise click.UsageError("--spool-dir is required (or --config with a spool_dir)")
        config = ReceiverConfig(**options)
        EventValidator.from_file(config.schema_file)  # fail at start, not per request (or in a worker)
        if config.api_key_file is not None:
            ApiKeys(config.api_key_file)
    except (SchemaError, KeyFileError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    if config.workers == 1:
        from receiver.server import serve

        _pin_malloc()
        sys.exit(serve(config))
    import functools

    from receiver.supervisor import Supervisor

    sys.exit(Supervisor(config, functools.partial(worker_main, log_level=log_level)).run())


def _with_routes(ctx: click.Context, config_file: Path, options: dict) -> dict:
    """The receiver's options with --config's routes (the spool root: --spool-dir if given, else the file's)."""
    from click.core import ParameterSource

    from ..config_file import load_plan

    given = ctx.get_parameter_source("spool_dir") not in (None, ParameterSource.DEFAULT)
    plan = load_plan(config_file, options["spool_dir"] if given else None, check_destinations=False)
    routing = plan.routing(options["max_spool_bytes"], max_event_bytes=options["max_event_bytes"])
    from spooler.layout import volume_bytes

    problem = plan.oversubscribed(options["max_spool_bytes"], options["min_free_bytes"],
                                  volume_bytes(plan.spool_dir))
    if problem:
        raise click.UsageError(f"{config_file}: {problem}")
    return {**options, "spool_dir": plan.spool_dir, "routing": routing}

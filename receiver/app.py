"""The Flask app: ``POST /v1/events`` → validate → one spool append → 201.

A request's path: CORS and API key checks, body decoding (gzip within a cap),
parsing into events, schema validation of all of them, stamping, one
``SpoolWriter.append`` of the whole batch, and a 201 built from constant bytes.
Nothing on this path touches the network or an unbounded queue. From reading
the body to the append, the request holds the memory it needs from the
worker's :class:`~receiver.budget.MemoryBudget` (413/503 when it cannot).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from spooler import (
    AppendFailed,
    AppendUncertain,
    FsyncPolicy,
    SpoolFull,
    SpoolUnwritable,
    SpoolWriter,
    WriterConfig,
    new_writer_id,
)

from .auth import ApiKeys
from .bad_events import BadEvents, HoldWithKept, Kept
from .body import BodyLimits, declared_body_bytes, media_type, read_events
from .budget import Hold, MemoryBudget
from .config import ReceiverConfig
from .context import RequestContext, parse_networks
from .cors import CorsPolicy
from .cost import ParseCost, serializing_bytes
from .errors import ApiError, BadRequest, TooLarge, Unavailable
from .metrics import ReceiverMetrics
from .openapi import build_openapi
from .probes import add_probe_routes
from .route_metrics import RouteMetrics
from .route_spools import RouteSpools
from .routing import route_function
from .stamping import IdGenerator, Stamping, serialize_events, serialize_routed
from .throttled_log import ThrottledLog
from .validation import EventValidator

__all__ = ["ReceiverState", "create_app", "create_probe_app", "open_spool", "writer_config"]

log = logging.getLogger(__name__)
JSON_TYPE = "application/json"
SYNC_HEADER = "X-Spoolship-Sync"  # on a 201 to a sync request: "fsynced", or "ignored" (see _sync_honoured)
_PUBLIC_REFUSALS = {SpoolFull: "the spool is full", SpoolUnwritable: "the spool cannot be written",
                    AppendUncertain: "the spool could not make the write durable"}


@dataclass
class ReceiverState:
    """Everything a request needs, built once per worker."""

    config: ReceiverConfig
    writer: SpoolWriter | RouteSpools  # RouteSpools with --config's routes (receiver/route_spools.py)
    validator: EventValidator
    cors: CorsPolicy
    keys: ApiKeys | None
    metrics: ReceiverMetrics
    limits: BodyLimits
    budget: MemoryBudget
    stamping: Stamping
    ids: IdGenerator = field(default_factory=IdGenerator)
    draining: bool = False
    sync_honoured: bool = False  # see _sync_honoured
    writer_always_syncs: bool = False  # --fsync always: every 201 follows an fsync anyway
    refusals_log: ThrottledLog = field(default_factory=lambda: ThrottledLog(log, "appends refused"))
    loop_seen_at: float | None = None  # time.monotonic() of the serving loop's last tick (None: not serving)
    route_of: Callable[[dict], int] | None = None  # with routes: event → route index
    route_metrics: RouteMetrics | None = None
    bad: BadEvents | None = None  # with a bad route: rejected requests kept there
    context: RequestContext = field(default_factory=RequestContext)


def writer_config(config: ReceiverConfig, worker: str | int = "0") -> WriterConfig:
    return WriterConfig(
        spool_dir=config.spool_dir,
        writer_id=new_writer_id(worker),
        segment_bytes=config.segment_bytes,
        segment_age_seconds=config.segment_age_seconds,
        max_spool_bytes=config.max_spool_bytes,
        min_free_bytes=config.min_free_bytes,
        fsync=config.fsync,
        fsync_interval_seconds=config.fsync_interval_seconds,
    )


def open_spool(config: ReceiverConfig, worker: str | int = "0",
               route_metrics: RouteMetrics | None = None) -> SpoolWriter | RouteSpools:
    """This worker's writer: of the spool, or of every route's spool (with routes)."""
    if config.routing is None:
        return SpoolWriter(writer_config(config, worker))
    return RouteSpools(config.routing, writer_config(config, worker), route_metrics)


def create_app(config: ReceiverConfig, writer: SpoolWriter | RouteSpools | None = None) -> Flask:
    """Build an isolated receiver app (its own writer, metrics and validator)."""
    metrics = ReceiverMetrics()
    route_metrics = RouteMetrics(metrics.registry) if config.routing is not None else None
    writer = writer or open_spool(config, route_metrics=route_metrics)
    if isinstance(writer, RouteSpools) and writer.metrics is None:
        writer.metrics = route_metrics
    state = ReceiverState(
        config=config,
        writer=writer,
        validator=EventValidator.from_file(config.schema_file),
        cors=CorsPolicy(config.cors_origins),
        keys=ApiKeys(config.api_key_file) if config.api_key_file else None,
        metrics=metrics,
        route_metrics=route_metrics,
        limits=BodyLimits(config.max_inflated_bytes, config.max_event_bytes, config.max_events, config.max_depth),
        sync_honoured=_sync_honoured(config),
        writer_always_syncs=config.fsync is FsyncPolicy.ALWAYS,
        budget=MemoryBudget(config.max_parse_bytes, max_waiters=max(1, config.threads // 2)),
        stamping=Stamping(config.stamp, config.id_field, config.received_at_field),
        context=RequestContext(config.client_ip_field, config.user_agent_field,
                               parse_networks(config.trusted_proxies)),
    )
    if config.routing is not None:
        state.route_of = route_function(config.routing)
        if isinstance(writer, RouteSpools) and writer.bad is not None:
            state.bad = BadEvents(config.routing.bad, writer.bad, config.invalid, id_field=config.id_field,
                                  received_at_field=config.received_at_field, ids=state.ids,
                                  on_outcome=lambda outcome: route_metrics.bad_events.labels(outcome).inc())
    app = Flask("spoolship.receiver")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["spoolship"] = state
    openapi_body = orjson.dumps(build_openapi(config))
    _register_routes(app, state, openapi_body)
    add_probe_routes(app, state, detailed=False, metrics_route=config.probe_port is None)
    _register_error_handlers(app, state)
    return app


def create_probe_app(state: ReceiverState) -> Flask:
    """The app of the ``--probe-port`` listener: the probes and metrics of ``state``'s worker."""
    app = Flask("spoolship.probes")
    add_probe_routes(app, state, detailed=True, metrics_route=True)
    _register_error_handlers(app, state)
    return app


def _register_routes(app: Flask, state: ReceiverState, openapi_body: bytes) -> None:
    metrics = state.metrics

    @app.post("/v1/events", provide_automatic_options=False)
    def post_events() -> Response:
        # The WSGI environ directly: werkzeug's header and stream wrappers cost more than the work.
        started = time.perf_counter()
        environ = request.environ
        cors_headers = state.cors.headers_for(environ.get("HTTP_ORIGIN"))
        if state.keys is not None:
            state.keys.check(environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_API_KEY"))
        kind = media_type(environ.get("CONTENT_TYPE"))
        sync_asked = _wants_sync(environ)
        with state.budget.hold() as hold:
            hold.need(declared_body_bytes(environ.get("CONTENT_LENGTH"), state.config.max_body_bytes))
            context = state.context.fields(environ) if state.context.enabled else None
            if state.bad is not None and state.bad.keeps(kind):
                events, cost = _read_keeping(environ, kind, hold, context)
            else:
                events, cost = read_events(_read_body(environ), environ.get("HTTP_CONTENT_ENCODING"), kind,
                                           state.limits, hold)
                state.validator.validate(events)
            try:
                nbytes = _write(events, cost, hold, context, sync_asked and state.sync_honoured)
            except AppendFailed as exc:
                # "written": "none" (send it again) or "unknown" (see docs/http-api.md). The details
                # (bytes, cap, free disk, errno) are for the operator's log, not for any client.
                state.refusals_log.add(reason=str(exc))
                raise Unavailable(_PUBLIC_REFUSALS.get(type(exc), "the spool refused the write"),
                                  exc.retry_after_seconds, written=exc.written) from None
        metrics.events_accepted.inc(len(events))
        metrics.bytes_accepted.inc(nbytes)
        metrics.request_seconds.observe(time.perf_counter() - started)
        response = Response(b'{"accepted":%d}' % len(events), status=201, content_type=JSON_TYPE)
        if cors_headers:
            response.headers.update(cors_headers)
        if sync_asked:
            response.headers[SYNC_HEADER] = "fsynced" if state.sync_honoured or state.writer_always_syncs else "ignored"
        return response

    def _read_keeping(environ: dict, kind: str, hold: Hold, context: dict | None):
        """Parse and validate as usual, keeping (at most the payload cap of) the body for the bad route
        until the request is known to be good; what is kept counts in the memory held meanwhile."""
        encoding = environ.get("HTTP_CONTENT_ENCODING")
        body = [_read_body(environ)]  # a list, so that read_events gets the only reference (freed as it goes)
        kept: Kept = state.bad.keep(body[0], kind, encoding)
        try:
            events, cost = read_events(body.pop(), encoding, kind, state.limits, HoldWithKept(hold, len(kept.payload)))
            state.validator.validate(events)
        except BadRequest as exc:  # unparseable, or failing the schema: keep it, answer the same 400
            state.bad.record(exc, kept, context)
            raise
        return events, cost

    def _write(events: list[dict], cost: ParseCost, hold: Hold, context: dict | None, sync: bool) -> int:
        """Stamp, serialize and append (to each route's spool, with routes); the bytes written."""
        if state.route_of is None:
            data = _serialize(events, cost, hold, state, context)
            state.writer.append(data, sync=sync)
            return len(data)
        parts = _serialize(events, cost, hold, state, context, route_of=state.route_of)
        state.writer.append(parts, sync=sync)
        for index, data in parts:
            state.route_metrics.events_accepted.labels(state.writer.names[index]).inc(data.count(b"\n"))
        return sum(len(data) for _, data in parts)

    def _read_body(environ: dict) -> bytes:
        length = environ.get("CONTENT_LENGTH")
        if not length:  # no length (chunked without one): werkzeug's reader enforces the limit
            return request.get_data(cache=False)
        try:
            size = int(length)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if size > state.config.max_body_bytes:
            raise TooLarge(f"request body exceeds {state.config.max_body_bytes} bytes")
        return environ["wsgi.input"].read(size)

    @app.route("/v1/events", methods=["OPTIONS"], provide_automatic_options=False)
    def preflight() -> Response:
        headers = state.cors.preflight_headers(request.headers.get("Origin"))
        return Response(b"", status=204, headers=headers)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return Response(openapi_body, status=200, content_type=JSON_TYPE)


def _sync_honoured(config: ReceiverConfig) -> bool:
    """``?sync=1`` is honoured only with ``--allow-sync``, and never under ``--fsync never``.

    With ``--api-key-file`` only requests with a valid key reach the append, so only they
    can ask. Off by default: any client could otherwise force one fsync per request.
    """
    if config.allow_sync and config.fsync is FsyncPolicy.NEVER:
        log.warning("--allow-sync has no effect under --fsync never: sync requests are ignored")
    return config.allow_sync and config.fsync is not FsyncPolicy.NEVER


def _wants_sync(environ: dict) -> bool:
    if environ.get("HTTP_X_SPOOLSHIP_SYNC") == "1":
        return True
    query = environ.get("QUERY_STRING")
    return bool(query) and "sync" in query and request.args.get("sync") in ("1", "true")


def _serialize(events: list[dict], cost: ParseCost, hold: Hold, state: ReceiverState, context: dict | None,
               route_of: Callable[[dict], int] | None = None):
    """Stamp and serialize the events (by route, with ``route_of``), holding memory for the stamps and
    the output as it grows."""

    def grown(nbytes: int) -> None:
        hold.need(serializing_bytes(cost, len(events), nbytes))

    grown(cost.length)  # compact JSON is about as long as the body (longer only for numbers like 1e9)
    hold.estimated()  # the next large request may start; more output than that never waits
    if route_of is not None:
        return serialize_routed(events, state.stamping, state.ids, state.config.max_event_bytes, route_of, grown,
                                context)
    return serialize_events(events, state.stamping, state.ids, state.config.max_event_bytes, grown, context)


def _register_error_handlers(app: Flask, state: ReceiverState) -> None:
    def respond(error: ApiError) -> Response:
        state.metrics.requests_rejected.labels(error.code).inc()
        response = Response(error.body(), status=error.status, content_type=JSON_TYPE)
        response.headers.update(error.headers())
        response.headers.update(state.cors.allowed_headers(request.environ.get("HTTP_ORIGIN")))
        return response

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return respond(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        generic = ApiError(error.description or error.name)
        generic.status = error.code or 400
        generic.code = error.name.lower().replace(" ", "_")
        if error.code == 413:
            generic = TooLarge(f"request body exceeds {state.config.max_body_bytes} bytes")
        return respond(generic)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unexpected error", extra={"path": request.path})
        return respond(ApiError("internal error; it has been logged"))

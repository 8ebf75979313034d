"""The OpenAPI 3.1 description served at ``/openapi.json`` (the contract of DESIGN.md)."""

from __future__ import annotations

from .config import ReceiverConfig

__all__ = ["build_openapi"]


def _error(description: str, retry_after: bool = False) -> dict:
    response: dict = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return response


def build_openapi(config: ReceiverConfig) -> dict:
    event = {"type": "object", "description": "One event: any JSON object (validated against --schema)."}
    events_body = {
        "oneOf": [event, {"type": "array", "items": event, "minItems": 1, "maxItems": config.max_events}],
    }
    security = [{"bearer": []}, {"apiKey": []}] if config.api_key_file else []
    if config.allow_sync and config.fsync.value != "never":
        sync_description = "answer only after the events are fsynced"
    else:
        sync_description = "ignored by this receiver (see --allow-sync); the answer says X-Spoolship-Sync: ignored"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "spoolship receiver",
            "version": "1",
            "description": "Accepts JSON events, spools them to disk and ships them to Kinesis.",
        },
        "paths": {
            "/v1/events": {
                "post": {
                    "summary": "Accept one event, an array of events, or NDJSON",
                    "security": security,
                    "parameters": [
                        {"name": "sync", "in": "query", "required": False,
                         "schema": {"type": "string", "enum": ["0", "1", "true"]},
                         "description": sync_description},
                        {"name": "X-Spoolship-Sync", "in": "header", "required": False,
                         "schema": {"type": "string", "enum": ["1"]}, "description": sync_description},
                        {"name": "Content-Encoding", "in": "header", "required": False,
                         "schema": {"type": "string", "enum": ["gzip", "identity"]}},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": events_body},
                            "text/plain": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "All events written to the spool",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
                            "headers": {"X-Spoolship-Sync": {
                                "schema": {"type": "string", "enum": ["fsynced", "ignored"]},
                                "description": "only on a sync request: whether the events were fsynced "
                                               "before this answer"}},
                        },
                        "400": _error("Malformed body or events failing validation (nothing written)"),
                        "401": _error("Missing or wrong API key (for a body over 8 KiB or chunked: "
                                      "answered when the headers end, and the connection closed)"),
                        "403": _error("Origin not allowed (see --cors-origin)"),
                        "413": _error("Body, inflated body, event, event count or parse memory (--max-parse-bytes) too large"),
                        "415": _error("Unsupported Content-Type, charset or Content-Encoding"),
                        "503": _error("Spool full or unwritable, the worker's parse memory in use by other large "
                                       "requests, or the worker holding as many request bodies as it may "
                                       "(--max-buffered-body-bytes); retry after Retry-After", retry_after=True),
                    },
                },
                "options": {"summary": "CORS preflight", "responses": {"204": {"description": "allowed"},
                                                                        "403": _error("origin refused")}},
            },
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "The spool accepts appends", "responses": {
                "200": {"description": "ready"}, "503": {"description": "spool full, unwritable or shutting down"}}}},
            **({} if config.probe_port is not None else {"/metrics": {"get": {
                "summary": "Prometheus metrics", "responses": {"200": {"description": "metrics"}}}}}),
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "spec"}}}},
        },
        "components": {
            "schemas": {
                "Accepted": {
                    "type": "object", "required": ["accepted"],
                    "properties": {"accepted": {"type": "integer", "minimum": 1}},
                },
                "Error": {
                    "type": "object", "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object"}},
                        "retry_after_seconds": {"type": "number"},
                    },
                },
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    }

"""JSON Schema validation with a compiled validator (fastjsonschema).

The schema is compiled once at start-up into Python code; validating a small
event then costs microseconds. Draft 4, 6 and 7 are supported (fastjsonschema
picks the draft from ``$schema``; draft 7 by default). A schema that does not
compile is a start-up error, never a request error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fastjsonschema
import orjson

from .errors import MAX_CLIENT_VALUE_CHARS, Invalid, clip, clip_quoted

__all__ = ["EventValidator", "SchemaError"]

MAX_REPORTED_ERRORS = 100


class SchemaError(Exception):
    """The configured schema file cannot be read or compiled."""


class EventValidator:
    """Validates whole requests: every failing event is reported, nothing partial passes."""

    def __init__(self, schema: dict | None) -> None:
        self.schema = schema
        self._validate: Callable[[object], object] | None = None
        if schema is not None:
            try:
                self._validate = fastjsonschema.compile(schema, use_default=False)
            except fastjsonschema.JsonSchemaDefinitionException as exc:
                raise SchemaError(f"schema does not compile: {exc}") from exc

    @classmethod
    def from_file(cls, path: Path | None) -> EventValidator:
        if path is None:
            return cls(None)
        try:
            schema = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SchemaError(f"cannot read schema {path}: {exc}") from exc
        if not isinstance(schema, dict | bool):
            raise SchemaError(f"schema {path} must be a JSON object")
        return cls(schema)

    def validate(self, events: list[dict]) -> None:
        """Raise :class:`Invalid` listing each failing event's index and message."""
        validate = self._validate
        if validate is None:
            return
        errors = []
        for index, event in enumerate(events):
            try:
                validate(event)
            except fastjsonschema.JsonSchemaValueException as exc:
                errors.append({"index": index, "message": _message(exc), "path": _json_path(exc.path)})
                if len(errors) >= MAX_REPORTED_ERRORS:
                    break
        if errors:
            raise Invalid(f"{len(errors)} of {len(events)} events failed validation", errors=errors)


def _json_path(path: list | None, root: str = "$") -> str:
    """fastjsonschema paths start with 'data'; show them as '$.field[0]', each key cut to 64 characters."""
    out = root
    for part in (path or ["data"])[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{clip(str(part), MAX_CLIENT_VALUE_CHARS)}"
    return out


def _message(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """fastjsonschema's message, repeating at most 64 characters of any key or value the client sent.

    Client text reaches a message two ways: the name of the failing value (``data.<key>``: a key matched
    by additionalProperties or patternProperties) and the quoted keys of ``must not contain {...}``.
    """
    message = exc.message
    if exc.name:
        message = message.replace(exc.name, _json_path(exc.path, root="data"))
    return clip_quoted(message)

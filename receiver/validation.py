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

from .errors import Invalid

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
                errors.append({"index": index, "message": exc.message, "path": _json_path(exc.path)})
                if len(errors) >= MAX_REPORTED_ERRORS:
                    break
        if errors:
            raise Invalid(f"{len(errors)} of {len(events)} events failed validation", errors=errors)


def _json_path(path: list | None) -> str:
    """fastjsonschema paths start with 'data'; show them as '$.field[0]'."""
    out = "$"
    for part in (path or ["data"])[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out

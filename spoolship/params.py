"""click parameter types for sizes and durations (plain numbers, or 64MiB / 250ms)."""

from __future__ import annotations

import click

from spooler import parse_duration, parse_size

__all__ = ["COMMAND_SETTINGS", "DURATION", "SIZE", "option"]


class ParsedType(click.ParamType):
    """A parameter parsed by one of spooler.units' functions (which raise ValueError)."""

    def __init__(self, name: str, parse) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value, param, ctx):
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = ParsedType("bytes", parse_size)
DURATION = ParsedType("seconds", parse_duration)


# Every sub-command reads SPOOLSHIP_<OPTION> (not click's default SPOOLSHIP_<COMMAND>_<OPTION>)
# and shows the variable in --help.
COMMAND_SETTINGS = {"auto_envvar_prefix": "SPOOLSHIP", "show_default": True}


def option(*param_decls: str, **attrs):
    attrs.setdefault("show_envvar", True)
    return click.option(*param_decls, **attrs)

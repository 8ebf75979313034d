"""click parameter types for sizes and durations (plain numbers, or 64MiB / 250ms)."""

from __future__ import annotations

import click

from spooler import parse_duration, parse_size

__all__ = ["COMMAND_SETTINGS", "DURATION", "SIZE", "option"]


class SizeType(click.ParamType):
    name = "bytes"

    def convert(self, value, param, ctx):
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DurationType(click.ParamType):
    name = "seconds"

    def convert(self, value, param, ctx):
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()
DURATION = DurationType()


# Every sub-command reads SPOOLSHIP_<OPTION> (not click's default SPOOLSHIP_<COMMAND>_<OPTION>)
# and shows the variable in --help.
COMMAND_SETTINGS = {"auto_envvar_prefix": "SPOOLSHIP", "show_default": True}


def option(*param_decls: str, **attrs):
    attrs.setdefault("show_envvar", True)
    return click.option(*param_decls, **attrs)

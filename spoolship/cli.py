"""The umbrella command. Each sub-command lives in spoolship/commands/; this only joins them.

Sub-commands are imported when they are run (click's LazyGroup pattern), so
`spoolship tail` does not pay for importing Flask, nor `receive` for boto3.
Every option also reads ``SPOOLSHIP_<OPTION>`` from the environment.
"""

from __future__ import annotations

import importlib

import click

__all__ = ["main"]

CONTEXT_SETTINGS = {"auto_envvar_prefix": "SPOOLSHIP", "show_default": True, "help_option_names": ["-h", "--help"]}

COMMANDS = {
    "check": ("spoolship.commands.check", "Validate a config file (routes, destinations) and print its plan."),
    "receive": ("spoolship.commands.receive", "Run the HTTP receiver: validate, append to the spool, answer 201."),
    "tail": ("spoolship.commands.tail", "Follow the spool (or each route's) and ship every line to Kinesis or Firehose."),
    "replay": ("spoolship.commands.replay", "Re-send spool segments or archive files (plain or .gz)."),
    "status": ("spoolship.commands.status", "Show what is in a spool and how far behind the tailer is."),
    "up": ("spoolship.commands.up", "The whole pipeline on this machine: AWS-API server, receiver, tailer, routes."),
    "peek": ("spoolship.commands.peek", "Print the events of a stream, a delivery stream or a route as NDJSON."),
    "rescue": ("spoolship.commands.rescue", "Drain the spool claims a scaled-down StatefulSet left (one pass)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return getattr(module, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="spoolship")
def main() -> None:
    """spoolship: take every small JSON event over HTTP, spool it to disk, ship it to Kinesis."""

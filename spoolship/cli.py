"""The umbrella command. Each sub-command lives in spoolship/commands/; this only joins them.

Every option also reads ``SPOOLSHIP_<OPTION>`` from the environment.
"""

from __future__ import annotations

import click

from .commands.peek import peek
from .commands.receive import receive
from .commands.replay import replay
from .commands.status import status
from .commands.tail import tail
from .commands.up import up

__all__ = ["main"]

CONTEXT_SETTINGS = {"auto_envvar_prefix": "SPOOLSHIP", "show_default": True, "help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="spoolship")
def main() -> None:
    """spoolship: take every small JSON event over HTTP, spool it to disk, ship it to Kinesis."""


for _command in (receive, tail, replay, status, up, peek):
    main.add_command(_command)

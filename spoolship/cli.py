"""The umbrella command. Each part contributes its own click command; this only joins them.

Every option also reads ``SPOOLSHIP_<OPTION>`` from the environment.
"""

from __future__ import annotations

import click

__all__ = ["main"]

CONTEXT_SETTINGS = {"auto_envvar_prefix": "SPOOLSHIP", "show_default": True, "help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="spoolship")
def main() -> None:
    """spoolship: take every small JSON event over HTTP, spool it to disk, ship it to Kinesis."""


def _not_built(name: str, issue: str) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"`spoolship {name}` is not built yet ({issue})")

    stub.help = f"(not built yet: {issue})"
    return stub


from .commands.receive import receive  # noqa: E402
from .commands.status import status  # noqa: E402
from .commands.tail import tail  # noqa: E402

main.add_command(receive)
main.add_command(tail)
main.add_command(status)

for _name, _issue in [
    ("replay", "replay"),
    ("up", "spoolship up"),
    ("peek", "peek"),
]:
    main.add_command(_not_built(_name, _issue))

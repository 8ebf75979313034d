"""`spoolship check --config F`: validate a config file and print the plan it resolves to."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spooler.layout import describe_strays, stray_dirs

from ..config_file import ConfigError, load_plan
from ..params import COMMAND_SETTINGS, option
from ..plan import BadPlan, Plan
from ..text import human_bytes, table

__all__ = ["check", "describe_plan"]


@click.command(context_settings=COMMAND_SETTINGS)
@option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
        help="The config file (TOML) to check.")
@option("--spool-dir", type=click.Path(file_okay=False, path_type=Path),
        help="Where route spools live, as `receive`/`tail` would be given it (wins over the file's spool_dir).")
@option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
def check(config_file: Path, spool_dir: Path | None, as_json: bool) -> None:
    """Validate a config file (routes, destinations) and print the resolved plan; exit 2 if it is wrong."""
    try:
        plan = load_plan(config_file, spool_dir)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    strays = stray_dirs(plan.spool_dir, [r.spool_dir for r in plan.every_route]) if spool_dir else []
    if as_json:
        click.echo(json.dumps({**plan.to_dict(), "strays": [
            {"path": str(d.path), "segments": d.segments, "bytes": d.bytes} for d in strays]}, indent=2))
        return
    click.echo("\n".join(describe_plan(plan)))
    if strays:
        click.echo(f"warning: segments outside every route's spool (the layout changed): "
                   f"{describe_strays(plan.spool_dir, strays)}; `tail` ships them to the default route's "
                   f"destination ({plan.default}); keep the old route in the file instead to ship them to its "
                   "destination (docs/deploy.md, \"Changing the spool layout\")")


def describe_plan(plan: Plan) -> list[str]:
    how = f'by the value of "{plan.field}"' if plan.field else "all events to one route"
    lines = [f"config   {plan.source}: valid", f"spool    {plan.spool_dir}",
             f"routing  {how}; default route: {plan.default}", ""]
    rows = []
    for route in plan.every_route:
        if isinstance(route, BadPlan):
            selects = "rejected requests"
            limits = (f"; at most {human_bytes(route.bytes_per_second)}/s and {route.events_per_second} "
                      f"events/s per worker, payloads cut at {human_bytes(route.max_payload_bytes)}")
        else:
            selects = ", ".join(route.values) or ""
            if route.name == plan.default:
                selects = f"{selects} (and the rest)" if selects else "(everything else)"
            limits = ""
        cap = human_bytes(route.max_spool_bytes) if route.max_spool_bytes else "--max-spool-bytes"
        destination = plan.destinations[route.destination]
        rows.append([route.name, selects, str(route.spool_dir), cap,
                     f"{route.destination}: {destination.describe()}{limits}"])
    lines += table(["ROUTE", "SELECTS", "SPOOL", "CAP", "DESTINATION"], rows)
    for warning in plan.warnings:
        lines.append(f"warning: {warning}")
    return lines

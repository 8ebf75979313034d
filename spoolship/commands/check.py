"""`spoolship check --config F`: validate a config file and print the plan it resolves to."""

from __future__ import annotations

import json
from pathlib import Path

import click

from receiver.config import DEFAULT_MAX_EVENT_BYTES
from spooler.config import DEFAULT_MAX_SPOOL_BYTES, DEFAULT_MIN_FREE_BYTES
from spooler.layout import describe_strays, stray_dirs, volume_bytes

from ..config_file import ConfigError, load_plan
from ..params import COMMAND_SETTINGS, SIZE, option
from ..plan import BAD_ROUTE_DEFAULT_MAX_SPOOL_BYTES, BadPlan, Plan
from ..text import human_bytes, table

__all__ = ["check", "describe_plan"]


@click.command(context_settings=COMMAND_SETTINGS)
@option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
        help="The config file (TOML) to check.")
@option("--spool-dir", type=click.Path(file_okay=False, path_type=Path),
        help="Where route spools live, as `receive`/`tail` would be given it (wins over the file's spool_dir).")
@option("--max-spool-bytes", type=SIZE, default=DEFAULT_MAX_SPOOL_BYTES,
        help="The receiver's --max-spool-bytes: the cap of every route that sets none.")
@option("--min-free-bytes", type=SIZE, default=DEFAULT_MIN_FREE_BYTES, help="The receiver's --min-free-bytes.")
@option("--max-event-bytes", type=SIZE, default=DEFAULT_MAX_EVENT_BYTES,
        help="The receiver's --max-event-bytes: every event must fit one record of its route's destination.")
@option("--volume-size", type=SIZE,
        help="Size of the spool volume (the claim's, e.g. 20Gi); default: the file system of --spool-dir, "
             "when given. Exit 2 if the routes' caps plus --min-free-bytes do not fit.")
@option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
def check(config_file: Path, spool_dir: Path | None, max_spool_bytes: int, min_free_bytes: int,
          max_event_bytes: int, volume_size: int | None, as_json: bool) -> None:
    """Validate a config file (routes, destinations) and print the resolved plan; exit 2 if it is wrong."""
    try:
        plan = load_plan(config_file, spool_dir)
        plan.routing(max_spool_bytes, max_event_bytes=max_event_bytes)  # what `receive` refuses at start
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    if volume_size is None and spool_dir is not None:
        volume_size = volume_bytes(plan.spool_dir)
    if volume_size is not None:
        problem = plan.oversubscribed(max_spool_bytes, min_free_bytes, volume_size)
        if problem:
            raise click.UsageError(f"{config_file}: {problem}")
    strays = stray_dirs(plan.spool_dir, [r.spool_dir for r in plan.every_route]) if spool_dir else []
    if as_json:
        click.echo(json.dumps({**plan.to_dict(), "strays": [
            {"path": str(d.path), "segments": d.segments, "bytes": d.bytes} for d in strays]}, indent=2))
        return
    click.echo("\n".join(describe_plan(plan)))
    total = sum(plan.caps(max_spool_bytes).values())
    click.echo(f"caps     {human_bytes(total)} for every route together (+ --min-free-bytes "
               f"{human_bytes(min_free_bytes)})" + (f", of a {human_bytes(volume_size)} volume" if volume_size else
                                                   "; give --volume-size to check they fit"))
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
        if route.max_spool_bytes:
            cap = human_bytes(route.max_spool_bytes)
        elif isinstance(route, BadPlan):
            cap = human_bytes(BAD_ROUTE_DEFAULT_MAX_SPOOL_BYTES) + " (default)"
        else:
            cap = "--max-spool-bytes"
        destination = plan.destinations[route.destination]
        rows.append([route.name, selects, str(route.spool_dir), cap,
                     f"{route.destination}: {destination.describe()}{limits}"])
    lines += table(["ROUTE", "SELECTS", "SPOOL", "CAP", "DESTINATION"], rows)
    for warning in plan.warnings:
        lines.append(f"warning: {warning}")
    return lines

"""`spoolship status`: segments, bytes behind, oldest unshipped age, writers, dead letters.

Of one spool (``--spool-dir``), or of every route's spool of a config file (``--config``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from spooler import CheckpointCorrupt
from spooler.layout import stray_dirs
from tailer.status import SpoolStatus, read_status

from ..config_file import ConfigError, load_plan
from ..params import COMMAND_SETTINGS, option
from ..strays import stray_route_name
from ..text import human_bytes, table

__all__ = ["status"]

_human = human_bytes


@click.command(context_settings=COMMAND_SETTINGS)
@option("--spool-dir", type=click.Path(file_okay=False, path_type=Path),
        help="The spool directory to inspect (with --config: where the route spools are).")
@option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="SPOOLSHIP_CONFIG", help="Config file: show every route's spool.")
@option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def status(spool_dir: Path | None, config_file: Path | None, as_json: bool) -> None:
    """Show what is in a spool (or each route's) and how far behind the tailer is (read-only)."""
    if config_file is not None:
        given = click.get_current_context().get_parameter_source("spool_dir") not in (None, ParameterSource.DEFAULT)
        try:
            plan = load_plan(config_file, spool_dir if given else None, check_destinations=False)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        reports = {route.name: _read(route.spool_dir) for route in plan.every_route}
        strays = _strays(plan.spool_dir, [route.spool_dir for route in plan.every_route])
        reports.update(strays)
        if as_json:
            click.echo(json.dumps({name: report.to_dict() if report else None for name, report in reports.items()},
                                  indent=2))
            return
        _show_routes(plan, reports, strays)
        return
    if spool_dir is None:
        raise click.UsageError("give --spool-dir, or --config for every route's spool")
    if not spool_dir.is_dir():
        raise click.UsageError(f"--spool-dir {spool_dir}: no such directory")
    report = _read(spool_dir, fatal=True)
    strays = _strays(spool_dir, [spool_dir])
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "strays": {name: r.to_dict() for name, r in strays.items()}},
                              indent=2))
        return
    _show_one(report)
    _show_strays(strays, "the stream")


def _strays(root: Path, spools: list[Path]) -> dict[str, SpoolStatus]:
    """Directories of segments no configured spool owns (spoolship/strays.py): the tailer ships them to the
    default route's destination; listed so that nobody takes the claim for empty."""
    return {stray_route_name(root, d.path): _read(d.path) for d in stray_dirs(root, spools)} \
        if root.is_dir() else {}


def _show_strays(strays: dict[str, SpoolStatus], where: str) -> None:
    if not strays:
        return
    click.echo("")
    click.echo(f"warning: segments outside every configured spool (the layout changed); `tail` ships them to "
               f"{where}:")
    for name, report in strays.items():
        click.echo(f"  {name:<20} {report.spool_dir}  {len(report.segments)} segments, "
                   f"{human_bytes(report.bytes_total)}, {human_bytes(report.bytes_behind)} behind")


def _read(spool_dir: Path, *, fatal: bool = False) -> SpoolStatus | None:
    if not spool_dir.is_dir():
        return None  # no receiver has written to this route yet
    try:
        return read_status(spool_dir)
    except CheckpointCorrupt as exc:
        raise click.ClickException(str(exc)) from None


def _show_routes(plan, reports: dict[str, SpoolStatus | None], strays: dict[str, SpoolStatus]) -> None:
    rows = []
    for route in plan.every_route:
        report = reports[route.name]
        destination = plan.destinations[route.destination]
        if report is None:
            rows.append([route.name, f"{destination.kind} {destination.stream}", "-", "-", "-", "-", "-",
                         "no spool yet"])
            continue
        oldest = report.oldest_unshipped_age_seconds
        rows.append([route.name, f"{destination.kind} {destination.stream}", str(len(report.segments)),
                     human_bytes(report.bytes_total), human_bytes(report.bytes_behind),
                     f"{oldest:.0f}s" if oldest is not None else "-", str(report.dead_letters),
                     "running" if report.tailer_running else "not running"])
    click.echo(f"config   {plan.source}")
    click.echo(f"spool    {plan.spool_dir}")
    click.echo("")
    for line in table(["ROUTE", "DESTINATION", "SEGMENTS", "BYTES", "BEHIND", "OLDEST", "DEAD", "TAILER"], rows):
        click.echo(line)
    _show_strays(strays, f"the default route's destination ({plan.default})")


def _show_one(report: SpoolStatus) -> None:
    oldest = report.oldest_unshipped_age_seconds
    click.echo(f"spool          {report.spool_dir}")
    click.echo(f"tailer         {'running' if report.tailer_running else 'not running'}")
    click.echo(f"segments       {len(report.segments)} ({_human(report.bytes_total)})")
    click.echo(f"behind         {_human(report.bytes_behind)}"
               + (f", oldest unshipped {oldest:.0f}s old" if oldest is not None else ""))
    click.echo(f"writers        {report.writers_alive} alive, {report.writers_orphaned} orphaned")
    click.echo(f"dead letters   {report.dead_letters}")
    if report.segments:
        click.echo("")
        click.echo(f"{'SEGMENT':<48} {'STATE':<9} {'SIZE':>10} {'SHIPPED':>10} {'AGE':>7}")
        for s in report.segments:
            click.echo(f"{s.segment:<48} {s.state:<9} {_human(s.bytes):>10} {_human(s.shipped_bytes):>10} "
                       f"{s.age_seconds:>6.0f}s")

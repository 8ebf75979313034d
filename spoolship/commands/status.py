"""`spoolship status`: segments, bytes behind, oldest unshipped age, writers, dead letters."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spooler import CheckpointCorrupt
from tailer.status import read_status

from ..params import COMMAND_SETTINGS, option

__all__ = ["status"]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@click.command(context_settings=COMMAND_SETTINGS)
@option("--spool-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
        help="The spool directory to inspect.")
@option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def status(spool_dir: Path, as_json: bool) -> None:
    """Show what is in a spool and how far behind the tailer is (read-only)."""
    try:
        report = read_status(spool_dir)
    except CheckpointCorrupt as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
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

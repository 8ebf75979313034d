"""Segments on the claim that no configured spool owns: found, shipped, counted, and never called "drained".

Changing the layout of a spool claim (one route at the spool root → ``--config``'s
``<root>/<route>/``, a route renamed or removed, or back to one route) leaves the
acknowledged segments of the old layout where they were (routes review,
finding 1). ``spoolship tail`` therefore:

- **ships them**: one extra loop per stray directory, to the destination of the
  default route (with ``--config``) or of the single stream (without). Each loop
  is an ordinary :class:`tailer.Shipper` on that directory, so it honours the
  checkpoint the old layout's tailer left there (nothing it covered is sent
  again) and exits 0 once the directory is empty (``exit_when_empty``). The
  events reach *a* destination, not necessarily the one their old route had:
  delivered beats stranded, and docs/deploy.md says how to keep the old route
  instead (leave it in the config until ``status`` shows it empty).
- **counts them** in ``spoolship_tailer_stray_bytes`` / ``_segments`` (re-read
  at every scrape, so strays that appear later, e.g. a receiver started with
  another config, are seen too) for the alert ``SpoolshipStraySegments``;
- **refuses to call a claim drained** (``--exit-when-empty`` exits 1, naming
  them) while any segment is left anywhere under the spool root.

Only the process that ships the default route ships strays (``--route`` splits
the routes over several tailer containers: exactly one of them has the default).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from spooler.layout import SegmentDir, describe_strays, segment_dirs, stray_dirs
from tailer import TailerConfig

__all__ = ["StrayGauges", "Strays", "describe_strays", "stray_route_name"]

log = logging.getLogger(__name__)


def stray_route_name(root: Path, path: Path) -> str:
    """``stray.root``, ``stray.clicks``: a label no route can have (route names have no '.')."""
    try:
        relative = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        relative = Path(path)
    text = str(relative).replace("/", ".")
    return "stray.root" if text in ("", ".") else f"stray.{text}"


class Strays:
    """The stray directories of one tail process: its spool root, every spool its config names, its archives."""

    def __init__(self, root: Path, spools: list[Path], skip: list[Path], *, ships_strays: bool) -> None:
        self.root = Path(root)
        self.spools = spools  # every configured spool (of every route, not only this process's)
        self.skip = skip
        self.ships_strays = ships_strays

    def find(self) -> list[SegmentDir]:
        return stray_dirs(self.root, self.spools, skip=self.skip) if self.root.is_dir() else []

    def loop_configs(self, template: TailerConfig) -> list[TailerConfig]:
        """One config per stray directory, shipping to ``template``'s destination, exiting when empty."""
        if not self.ships_strays:
            return []
        found = self.find()
        if not found:
            return []
        log.warning("segments outside every configured spool (the spool layout changed); shipping them to "
                    "the default route's destination", extra={"strays": describe_strays(self.root, found),
                                                                "destination": template.stream})
        configs = []
        for stray in found:
            name = stray_route_name(self.root, stray.path)
            archive = template.archive_dir.parent / name if template.archive_dir is not None else None
            configs.append(replace(template, spool_dir=stray.path, route=name, exit_when_empty=True,
                                   archive_dir=archive))
        return configs

    def left_behind(self) -> list[SegmentDir]:
        """After an ``--exit-when-empty`` run: every directory under the spool root still holding a
        segment, whoever owns it. Strict on purpose: a drain that exits 0 lets the rescue mark the claim
        drained, and drained claims get deleted; with ``--route`` the other routes' segments count too."""
        return segment_dirs(self.root, skip=self.skip) if self.root.is_dir() else []


class StrayGauges:
    """``spoolship_tailer_stray_bytes`` / ``_segments``: read at every scrape (a cheap walk that skips
    dead letters and archives)."""

    def __init__(self, strays: Strays, registry: CollectorRegistry) -> None:
        self._strays = strays
        registry.register(self)

    def describe(self):
        return []  # collect() walks the disk: never at registration

    def collect(self):
        found = self._strays.find()
        stray_bytes = GaugeMetricFamily("spoolship_tailer_stray_bytes",
                                        "Bytes of segments under the spool root that no configured spool "
                                        "owns (the spool layout changed; docs/deploy.md)")
        stray_bytes.add_metric([], sum(d.bytes for d in found))
        segments = GaugeMetricFamily("spoolship_tailer_stray_segments",
                                     "Segments under the spool root that no configured spool owns")
        segments.add_metric([], sum(d.segments for d in found))
        return [stray_bytes, segments]

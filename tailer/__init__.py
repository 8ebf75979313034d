"""Follow the spool, ship lines to Kinesis, checkpoint, delete only what is acknowledged.

Where a line goes: ``follower`` wakes the ``shipper`` → ``spooler.read_lines``
(through ``spoolio``'s guard) → ``packing`` (batches, KPL ``kpl`` aggregates,
``partition`` keys) → ``delivery`` (retries, ``outstanding`` work, ``deadletters``,
``placement`` after a reshard) → ``kinesis.KinesisSink`` (answers classified by
``kinesis_errors`` into ``errors``) → acknowledged spans move ``progress`` →
``tracker`` saves the checkpoint → sealed, fully shipped segments are deleted or
archived.
"""

from __future__ import annotations

from .config import TailerConfig
from .kinesis import KinesisSink
from .metrics import MetricsServer, TailerMetrics
from .shipper import Shipper

__all__ = ["KinesisSink", "MetricsServer", "Shipper", "TailerConfig", "TailerMetrics"]

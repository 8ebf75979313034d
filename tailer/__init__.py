"""Follow the spool, ship lines to Kinesis, checkpoint, delete only what is acknowledged.

Where a line goes: ``follower`` wakes the ``shipper`` → ``spooler.read_lines`` →
``packing`` (batches, KPL ``kpl`` aggregates, ``partition`` keys) → ``delivery``
(retries) → ``kinesis.KinesisSink`` → acknowledged spans move ``progress`` →
the checkpoint is saved → sealed, fully shipped segments are deleted or archived.
"""

from __future__ import annotations

from .config import TailerConfig
from .kinesis import KinesisSink
from .metrics import MetricsServer, TailerMetrics
from .shipper import Shipper

__all__ = ["KinesisSink", "MetricsServer", "Shipper", "TailerConfig", "TailerMetrics"]

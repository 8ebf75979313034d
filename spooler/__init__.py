"""The disk spool: the only contract between the receiver and the tailer.

Standard library only. See docs/spool-format.md for the format on disk.
"""

from __future__ import annotations

from .archive import archive_segment, prune_archive
from .capacity import SpoolUsage, measure_usage
from .checkpoint import CHECKPOINT_FILE, CheckpointStore, read_checkpoint
from .config import FsyncPolicy, WriterConfig
from .deadletter import DEAD_LETTER_DIR, count_dead_letters, write_dead_letter
from .errors import (
    AppendFailed,
    AppendRefused,
    AppendUncertain,
    CheckpointCorrupt,
    CheckpointLocked,
    SpoolError,
    SpoolFull,
    SpoolUnwritable,
)
from .naming import SegmentName, new_writer_id, parse_segment_name
from .reader import LineChunk, iter_chunks, read_lines, read_range
from .segments import Segment, SegmentState, list_segments, remove_stale_creating, seal_orphan
from .units import parse_duration, parse_size
from .writer import SpoolWriter, WriterStats, append_all

__all__ = [
    "CHECKPOINT_FILE",
    "DEAD_LETTER_DIR",
    "AppendFailed",
    "AppendRefused",
    "AppendUncertain",
    "CheckpointCorrupt",
    "CheckpointLocked",
    "CheckpointStore",
    "FsyncPolicy",
    "LineChunk",
    "Segment",
    "SegmentName",
    "SegmentState",
    "SpoolError",
    "SpoolFull",
    "SpoolUnwritable",
    "SpoolUsage",
    "SpoolWriter",
    "WriterConfig",
    "WriterStats",
    "append_all",
    "archive_segment",
    "count_dead_letters",
    "iter_chunks",
    "list_segments",
    "measure_usage",
    "new_writer_id",
    "parse_duration",
    "parse_segment_name",
    "parse_size",
    "prune_archive",
    "read_checkpoint",
    "read_lines",
    "read_range",
    "remove_stale_creating",
    "seal_orphan",
    "write_dead_letter",
]

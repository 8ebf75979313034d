"""Appends numbered records forever and reports each acknowledged one on stdout.

Used by the crash test: the parent kill -9s this process at a random moment and
checks that every record it saw acknowledged is in the spool, whole.
usage: appender.py SPOOL_DIR WRITER_ID SEGMENT_BYTES [BATCH]
"""

import sys
from pathlib import Path

from spooler import FsyncPolicy, SpoolWriter, WriterConfig

spool, writer_id, segment_bytes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
writer = SpoolWriter(
    WriterConfig(spool, writer_id, segment_bytes=segment_bytes, min_free_bytes=0, fsync=FsyncPolicy.NEVER)
)
out = sys.stdout
n = 0
pad = "x" * 150
while True:
    lines = b"".join(f'{{"w":"{writer_id}","n":{n + i},"pad":"{pad}"}}\n'.encode() for i in range(batch))
    writer.append(lines)
    out.write(f"{n + batch - 1}\n")
    out.flush()
    n += batch

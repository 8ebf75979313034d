"""A writer stuck in the middle of creating its segment (its rename never returns), as a worker
frozen or killed at that instant: it holds the lock of its hidden ``.creating-…`` file.

Prints "stuck" once it is there. usage: stuck_creating.py SPOOL_DIR WRITER_ID
"""

import os
import sys
import threading
from pathlib import Path

from spooler import FsyncPolicy, SpoolWriter, WriterConfig

real_rename = os.rename


def stuck_rename(src, dst, *args, **kwargs):
    if ".creating-" in str(src):
        sys.stdout.write("stuck\n")
        sys.stdout.flush()
        threading.Event().wait()
    return real_rename(src, dst, *args, **kwargs)


os.rename = stuck_rename
writer = SpoolWriter(WriterConfig(Path(sys.argv[1]), sys.argv[2], min_free_bytes=0, fsync=FsyncPolicy.NEVER))
writer.append(b"{}\n")

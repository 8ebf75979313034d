"""Appends records 0..COUNT-1 tagged with TAG from THREADS threads, then exits.

Every fifth append is a batch of two records in one write.
usage: mixed_appender.py SPOOL_DIR TAG COUNT THREADS
"""

import sys
import threading
from pathlib import Path

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, new_writer_id


def record(tag: str, n: int) -> bytes:
    return b'{"tag":"%s","n":%d,"pad":"%s"}\n' % (tag.encode(), n, b"y" * (n % 300))


def run(writer: SpoolWriter, tag: str, count: int, threads: int) -> None:
    def work(thread: int) -> None:
        mine = list(range(thread, count, threads))
        i = 0
        while i < len(mine):
            if i % 5 == 0 and i + 1 < len(mine):
                writer.append(record(tag, mine[i]) + record(tag, mine[i + 1]))
                i += 2
            else:
                writer.append(record(tag, mine[i]))
                i += 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


if __name__ == "__main__":
    spool, tag, count, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = WriterConfig(spool, new_writer_id(tag), segment_bytes=64 * 1024, min_free_bytes=0, fsync=FsyncPolicy.NEVER)
    with SpoolWriter(config) as writer:
        run(writer, tag, count, threads)

"""Saves checkpoints in a tight loop, each with a bigger generation number.

usage: checkpointer.py SPOOL_DIR
"""

import sys
from pathlib import Path

from spooler import CheckpointStore

store = CheckpointStore(Path(sys.argv[1]))
generation = max(store.offsets.values(), default=0)
while True:
    generation += 1
    store.save({f"writer-{i:08d}": generation for i in range(50)})
    sys.stdout.write(f"{generation}\n")
    sys.stdout.flush()

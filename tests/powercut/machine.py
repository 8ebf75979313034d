"""One simulated machine on the power-cut disk, in this process: receiver workers (writers),
a tailer (shipper) and clients appending, until the power goes.

A :class:`Machine` runs on one spool directory: ``writers`` SpoolWriters (the
receiver's workers), a Shipper driven by its own step loop (the tailer) that
ships to a :class:`MemorySink` (Kinesis: it lives elsewhere, so it survives the
cut), and client threads appending numbered events, some with ``sync``. Every
append that returned is *acknowledged* (a 201), with the time it returned.
Options add what the review found the power-cut runs lacked: a writer that dies
mid-round (``dying``: its segment becomes an orphan the tailer must seal, as
after a SIGKILL), an archive inside the spool (``archive``), and a spool that
already holds many dead letters (``dead_letters``).

:class:`Ledger` keeps the account across cuts: an acknowledged event must be in
the sink or in the spool that the disk left after the cut; one that is in
neither is lost, and its age at the cut is recorded. Checkpoints saved on each
spool are recorded too, to check that the one found after a cut is the old or
the new one. A dead writer's events are judged by the moment it died (it made
nothing more durable after that), and once the tailer has sealed its orphan,
none of them may be lost at all.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from spooler import (
    DEAD_LETTER_DIR,
    AppendFailed,
    CheckpointStore,
    FsyncPolicy,
    SpoolWriter,
    WriterConfig,
    iter_chunks,
    list_segments,
    new_writer_id,
)
from tailer import Shipper, TailerConfig
from tailer.sink import PutResult


class MemorySink:
    """Kinesis for in-process tests: keeps every record it accepted."""

    def __init__(self, *, call_seconds: float = 0.0) -> None:
        self.accepted: list[bytes] = []
        self.call_seconds = call_seconds  # a slow stream keeps a backlog in the spool
        self._lock = threading.Lock()

    def put_records(self, records):
        if self.call_seconds:
            time.sleep(self.call_seconds)
        with self._lock:
            self.accepted.extend(data for data, _key, _ in records)
        return PutResult([])

    def close(self) -> None:
        pass

    def ids(self) -> set[str]:
        with self._lock:
            return {json.loads(line)["_id"] for line in self.accepted}


class CheckpointLog:
    """Every checkpoint save, per spool directory, with whether it returned."""

    def __init__(self) -> None:
        self.saves: dict[Path, list[list]] = {}
        self._real_save = CheckpointStore.save

    def install(self, monkeypatch) -> None:
        log = self

        def recording_save(store, offsets, identities=None):
            entry = [dict(offsets), False]
            log.saves.setdefault(Path(store._dir), []).append(entry)
            log._real_save(store, offsets, identities)
            entry[1] = True

        monkeypatch.setattr(CheckpointStore, "save", recording_save)

    def acceptable_after_cut(self, spool: Path, inherited: dict[str, int]) -> list[dict[str, int]]:
        """The last save that returned (or what the spool started with), or one started after it."""
        saves = self.saves.get(Path(spool), [])
        done = [i for i, (_, returned) in enumerate(saves) if returned]
        last = done[-1] if done else -1
        return [saves[last][0] if done else inherited] + [offsets for offsets, _ in saves[last + 1:]]


@dataclass
class Acked:
    line: bytes
    at: float
    sync: bool
    writer: str = ""


@dataclass
class Death:
    """A writer killed mid-round: when, and the segment it left as an orphan."""

    at: float
    orphan: str | None


@dataclass
class Ledger:
    acked: dict[str, Acked] = field(default_factory=dict)
    lost: dict[str, tuple[float, bool]] = field(default_factory=dict)  # id -> (age at the cut, sync)
    cuts: int = 0
    deaths: dict[str, Death] = field(default_factory=dict)  # writer id -> how it died
    orphans_sealed_lost: list[str] = field(default_factory=list)  # events lost although their orphan was sealed

    def settle_cut(self, cut_at: float, spool_after: Path, sink: MemorySink) -> list[str]:
        """Account for every acknowledged event after a cut; returns the ids lost by this cut."""
        self.cuts += 1
        present = {json.loads(line)["_id"] for line in complete_lines(spool_after)}
        shipped = sink.ids()
        earlier = set(self.lost)
        newly = [i for i in self.acked if i not in earlier and i not in present and i not in shipped]
        for event_id in newly:
            acked = self.acked[event_id]
            death = self.deaths.get(acked.writer)
            self.lost[event_id] = ((death.at if death else cut_at) - acked.at, acked.sync)
        # A dying writer appends to one segment only; once sealed (by the tailer), every event the writer
        # acknowledged must be in it on the disk — shipped or not (sealed means durable).
        # (The writers that died before this cut: earlier ones were judged at their own cut.)
        sealed = {name.rsplit(".", 1)[0] for name in os.listdir(spool_after) if name.endswith(".ndjson")}
        for writer, death in self.deaths.items():
            if death.orphan in sealed:
                self.orphans_sealed_lost += [i for i, acked in self.acked.items()
                                             if acked.writer == writer and i not in present and i not in earlier]
        self.deaths.clear()
        return newly

    def missing_from_disk(self, spool_after: Path) -> list[str]:
        """Acknowledged events (not lost at a cut) in neither the spool's segments nor its archive."""
        present = {json.loads(line)["_id"] for line in complete_lines(spool_after)}
        present |= archived_ids(spool_after / ARCHIVE_DIR)
        return [i for i in self.acked if i not in self.lost and i not in present]


ARCHIVE_DIR = "archive"


def archived_ids(archive: Path) -> set[str]:
    """The events in an archive folder (plain or gzipped segments)."""
    if not archive.is_dir():
        return set()
    ids = set()
    for path in archive.iterdir():
        if path.name.startswith("."):
            continue
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        ids |= {json.loads(line)["_id"] for line in data.splitlines() if line}
    return ids


def kill(writer: SpoolWriter) -> str | None:
    """What SIGKILL does to a writer, seen from the disk: it stops, its descriptor closes (releasing
    its flock) without a seal, and what was not fsynced stays in the page cache. Returns the orphan."""
    for housekeeper in writer._housekeepers:
        housekeeper.stop()
    with writer._lock:
        active, writer._active, writer._fd, writer._budget = writer._active, None, -1, 0
        writer._closed = True
        if active is None:
            return None
        writer._commit.wait_idle_then(lambda: os.close(active.fd))
        return active.name.segment_id


def add_dead_letters(spool: Path, count: int) -> None:
    """A spool that already holds many dead letters (written as the tailer writes them, made durable)."""
    folder = spool / DEAD_LETTER_DIR
    folder.mkdir()
    for i in range(count):
        (folder / f"old_w0_p1_x-00000001@{i}.bin").write_bytes(b'{"torn":')
    for path in (folder, spool):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def complete_lines(spool: Path) -> list[bytes]:
    """Every line of every segment; asserts there is no torn tail and every line is JSON."""
    lines = []
    for segment in list_segments(spool, probe=False):
        data = segment.path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{segment.path.name} has a torn tail after the cut"
        for chunk in iter_chunks(segment.path):
            for line in chunk.data.splitlines(keepends=True):
                json.loads(line)  # never garbage: the model keeps whole fsynced appends
                lines.append(line)
    return lines


class Machine:
    def __init__(self, spool: Path, sink: MemorySink, ledger: Ledger, *, policy: FsyncPolicy,
                 interval_seconds: float = 0.05, sync_share: float = 0.0, clients: int = 3, writers: int = 2,
                 seed: int = 0, tag: str = "m", ship: bool = True, segment_bytes: int = 6000,
                 segment_age_seconds: float = 0.15, dying: bool = False, archive: bool = False) -> None:
        self.spool = spool
        self.ledger = ledger
        self.sync_share = sync_share
        self.tag = tag
        self.writers = [
            SpoolWriter(WriterConfig(spool, new_writer_id(f"{tag}{i}"), segment_bytes=segment_bytes,
                                     segment_age_seconds=segment_age_seconds,
                                     min_free_bytes=0, fsync=policy, fsync_interval_seconds=interval_seconds))
            for i in range(writers)
        ]
        self._dying = None
        if dying:  # one segment until it dies: the orphan holds everything it acknowledged
            self._dying = SpoolWriter(WriterConfig(spool, new_writer_id(f"{tag}dying"), segment_bytes=10**7,
                                                   segment_age_seconds=600, min_free_bytes=0, fsync=policy,
                                                   fsync_interval_seconds=interval_seconds))
            self.writers.append(self._dying)
        # The tailer must start on whatever the cut left: a corrupt checkpoint would raise here.
        archive_options = {"archive_dir": spool / ARCHIVE_DIR, "archive_max_bytes": 10**9,
                           "archive_gzip": seed % 2 == 0} if archive else {}
        self.shipper = Shipper(TailerConfig(spool, "s", linger_seconds=0.005, poll_interval_seconds=0.02,
                                            checkpoint_interval_seconds=0.02, concurrency=2,
                                            max_backoff_seconds=0.05, **archive_options), sink)
        self._stop_load = threading.Event()
        self._stop_ship = threading.Event()
        self._rng = random.Random(seed)
        self._threads = [threading.Thread(target=self._ship if ship else self._stop_ship.wait, daemon=True)]
        self._threads += [threading.Thread(target=self._client, args=(c, seed), daemon=True) for c in range(clients)]
        if dying:
            self._threads.append(threading.Thread(target=self._die_later, daemon=True))

    def start(self) -> Machine:
        for thread in self._threads:
            thread.start()
        return self

    def _ship(self) -> None:
        while not self._stop_ship.is_set():
            try:
                worked = self.shipper.ship_once()
            except OSError:
                return  # the disk is gone
            if not worked:
                time.sleep(0.003)

    def _client(self, client: int, seed: int) -> None:
        rng = random.Random(seed * 1000 + client)
        n = 0
        while not self._stop_load.is_set():
            count = 1 if rng.random() < 0.7 else rng.randint(2, 6)
            ids = [f"{self.tag}-c{client}-{n + i}" for i in range(count)]
            n += count
            data = b"".join(orjson.dumps({"_id": i, "pad": "p" * rng.randint(0, 200)}) + b"\n" for i in ids)
            sync = rng.random() < self.sync_share
            writer = rng.choice(self.writers)
            try:
                writer.append(data, sync=sync)
            except AppendFailed:
                continue  # a 503: not acknowledged
            now = time.monotonic()
            for event_id, line in zip(ids, data.splitlines(keepends=True), strict=True):
                self.ledger.acked[event_id] = Acked(line, now, sync, writer.config.writer_id)
            time.sleep(rng.random() * 0.002)

    def _die_later(self) -> None:
        if self._stop_load.wait(self._rng.uniform(0.005, 0.1)):
            return
        writer = self._dying
        at = time.monotonic()
        self.ledger.deaths[writer.config.writer_id] = Death(at, kill(writer))

    def power_off(self) -> None:
        """After the cut: everything of this machine is dead; release its threads and descriptors."""
        self._stop_load.set()
        self._stop_ship.set()
        for thread in self._threads:
            thread.join(30)
        for writer in self.writers:
            writer.close()
        with contextlib.suppress(OSError):
            self.shipper.close()

    def drain(self, timeout: float = 60.0) -> None:
        """No more load: seal, and ship until no segment holds a byte."""
        self._stop_load.set()
        for thread in self._threads[1:]:
            thread.join(30)
        for writer in self.writers:
            writer.close()
        deadline = time.monotonic() + timeout
        while any(s.size for s in list_segments(self.spool, probe=False)):
            assert self._threads[0].is_alive(), "the tailer stopped"
            assert time.monotonic() < deadline, "the spool did not drain"
            time.sleep(0.01)
        self._stop_ship.set()
        self._threads[0].join(30)
        self.shipper.close()

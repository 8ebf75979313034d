"""Re-sending spool segments and archives (plain or .gz) with the tailer's batching and retries.

Files are read in bounded chunks (gzip streamed), never modified, and never held
whole in memory. A torn last line is reported, not sent; a line over the record
limit is reported and skipped — all of it, up to its newline (a line longer than
the read window is discarded to its end, never shipped in pieces). Offsets in the
report are byte offsets of the file's (uncompressed) content; a file shorter
than ``--from-offset`` is skipped and reported, and the others are replayed.
``--rate`` paces events one small slice at a time (a twentieth of a second's
worth) through a token bucket that saves up at most a quarter second's worth
(so after a stall of the destination, replay does not send the stall's worth at
once to catch up), and sends what is packed at least every quarter second. The
summary's ``events`` counts lines the destination acknowledged, never lines only
read. ``dry_run`` parses every line as JSON and counts what would be sent
without contacting Kinesis.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from spooler.token_bucket import TokenBucket

from .delivery import Backoff, Delivery
from .lines import split_lines
from .metrics import TailerMetrics
from .packing import AggregatingPacker, Batch, PlainPacker, Span
from .partition import make_key_function
from .placement import PlacementCheck
from .shardmap import ShardMap
from .sink import Record, Sink

__all__ = ["ReplayOptions", "ReplaySummary", "Replayer", "check_readable"]

_BLOCK_BYTES = 1024 * 1024
_MAX_CARRY = 2 * 1024 * 1024
_PACE_SLICE_SECONDS = 0.05
_RATE_LINGER_SECONDS = 0.25
_RATE_BURST_SECONDS = 0.25


class _ShortFile(Exception):
    """The file ends before --from-offset: skipped and reported."""


@dataclass(frozen=True)
class ReplayOptions:
    from_offset: int = 0
    rate: float | None = None  # events per second
    dry_run: bool = False
    aggregate: bool = False
    aggregate_max_bytes: int = 51_200
    partition_key: str = "random"
    concurrency: int = 4
    max_batch_bytes: int = 1024 * 1024


@dataclass
class ReplaySummary:
    files: int = 0
    events: int = 0
    bytes: int = 0
    batches: int = 0
    records: int = 0
    invalid_json: int = 0
    torn: list[str] = field(default_factory=list)
    too_large: int = 0
    skipped_head_bytes: int = 0
    skipped_files: list[str] = field(default_factory=list)
    failed_records: int = 0
    retries: int = 0
    elapsed_seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed_records == 0 and self.error is None


def check_readable(path: Path) -> str | None:
    """Why ``path`` cannot be replayed, or None."""
    if not path.exists():
        return f"{path}: no such file"
    if not path.is_file():
        return f"{path}: not a regular file"
    if not os.access(path, os.R_OK):
        return f"{path}: not readable (permission denied)"
    return None


def _open(path: Path):
    raw = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")
    raw.seek(0)
    return raw, raw


class Replayer:
    def __init__(self, sink: Sink | None, options: ReplayOptions,
                 progress: Callable[[int, int], None] | None = None) -> None:
        """``progress(raw_bytes_read, events_sent)`` is called as files are read."""
        self._sink = sink
        self._options = options
        self._progress = progress or (lambda _b, _e: None)
        self.summary = ReplaySummary()
        self._metrics = TailerMetrics()
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._rejected_per_batch: dict[int, int] = {}
        self._bucket = None
        if options.rate:
            slice_events = max(1, int(options.rate * _PACE_SLICE_SECONDS))
            self._bucket = TokenBucket(options.rate, burst_seconds=max(_RATE_BURST_SECONDS,
                                                                       slice_events / options.rate))
            self._bucket.take(self._bucket.capacity)  # nothing saved up at the start either
        per_key = options.aggregate and options.partition_key != "random"
        self._shard_map = ShardMap(sink.list_shards if sink is not None else list) if per_key else None
        placement = PlacementCheck(self._shard_map, options.aggregate_max_bytes) if per_key and sink else None
        self._delivery = None if sink is None else Delivery(
            sink, self._metrics, backoff=Backoff(), abort=self._abort, reject=self._rejected, raise_permanent=True,
            placement=placement)

    def run(self, paths: list[Path]) -> ReplaySummary:
        self._started = started = time.monotonic()
        packer = self._make_packer()
        pool = ThreadPoolExecutor(self._options.concurrency, thread_name_prefix="replay")
        inflight: set[Future] = set()
        try:
            for path in paths:
                self.summary.files += 1
                try:
                    self._replay_file(path, packer, pool, inflight)
                except _ShortFile as short:
                    self.summary.skipped_files.append(str(short))
            if not self._options.dry_run:
                self._submit(packer.flush(), pool, inflight)
                self._wait_all(inflight)
        except Exception as exc:  # surfaced as the summary's error and a non-zero exit
            self._abort.set()
            self.summary.error = f"{type(exc).__name__}: {exc}"
        finally:
            pool.shutdown(wait=True)
        self.summary.retries = int(self._metrics.retries._value.get())
        self.summary.elapsed_seconds = round(time.monotonic() - started, 3)
        return self.summary

    def _replay_file(self, path: Path, packer, pool: ThreadPoolExecutor, inflight: set[Future]) -> None:
        for span, lines in self._read(path):
            for part in self._slices(lines):
                self._pace(len(part))
                self.summary.bytes += sum(map(len, part))
                if self._options.dry_run:
                    self.summary.events += len(part)  # would be sent
                    self._validate(part)
                    continue
                packer.pack(span, part)
                self._submit(packer.take_full(), pool, inflight)
                if self._options.rate and packer.pending_since is not None \
                        and time.monotonic() - packer.pending_since >= _RATE_LINGER_SECONDS:
                    self._submit(packer.flush(), pool, inflight)

    def _slices(self, lines: list[bytes]) -> Iterator[list[bytes]]:
        """Without --rate, the whole chunk; with it, a twentieth of a second's worth at a time."""
        rate = self._options.rate
        if not rate:
            yield lines
            return
        size = max(1, int(rate * _PACE_SLICE_SECONDS))
        for start in range(0, len(lines), size):
            yield lines[start:start + size]

    def _make_packer(self):
        options = self._options
        key_fn = make_key_function(options.partition_key)
        if not options.aggregate:
            return PlainPacker(key_fn, self._too_large, max_batch_bytes=options.max_batch_bytes)
        return AggregatingPacker(key_fn, self._too_large, max_bytes=options.aggregate_max_bytes,
                                 shard_map=self._shard_map, max_batch_bytes=options.max_batch_bytes)

    def _read(self, path: Path) -> Iterator[tuple[Span, list[bytes]]]:
        """(span, complete lines) of the file, from --from-offset; offsets are of the content."""
        raw, stream = _open(path)
        with raw:
            offset = self._options.from_offset
            if offset:
                offset += self._skip(stream, offset, path)
            carry = b""
            dropping = False  # inside a line longer than the window: discarded up to its newline
            while True:
                block = stream.read(_BLOCK_BYTES)
                self._progress(raw.tell(), self.summary.events)
                if not block:
                    break
                if dropping:
                    newline = block.find(b"\n")
                    if newline < 0:
                        offset += len(block)
                        continue
                    offset += newline + 1
                    block = block[newline + 1:]
                    dropping = False
                data = carry + block
                cut = data.rfind(b"\n") + 1
                carry = data[cut:]
                lines = split_lines(data[:cut])
                if lines:
                    yield Span(path.name, offset, offset + cut, len(lines)), lines
                offset += cut
                if len(carry) > _MAX_CARRY:  # an endless line: dropped whole and reported
                    self.summary.too_large += 1
                    offset += len(carry)
                    carry = b""
                    dropping = True
            if carry:
                self.summary.torn.append(f"{path}: {len(carry)} bytes at offset {offset} without a newline")

    def _skip(self, stream, skip: int, path: Path) -> int:
        """Skip exactly ``skip`` bytes; if that lands inside a line, skip to the next one and say so.

        Returns how many bytes past ``skip`` the first whole line starts."""
        left = skip - 1
        while left:
            block = stream.read(min(left, _BLOCK_BYTES))
            if not block:
                raise _ShortFile(f"{path}: shorter than --from-offset {skip}: skipped")
            left -= len(block)
        last = stream.read(1)
        if not last:
            raise _ShortFile(f"{path}: shorter than --from-offset {skip}: skipped")
        skipped = 0
        while last != b"\n":  # the rest of that line, in bounded pieces
            piece = stream.readline(_BLOCK_BYTES)
            if not piece:
                break
            skipped += len(piece)
            last = piece[-1:]
        self.summary.skipped_head_bytes += skipped
        return skipped

    def _validate(self, lines: list[bytes]) -> None:
        for line in lines:
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                self.summary.invalid_json += 1

    def _too_large(self, span: Span, line: bytes, reason: str) -> None:
        self.summary.too_large += 1
        span.pending -= 1

    def _pace(self, events: int) -> None:
        """Wait for ``events`` tokens: the rate, with at most a quarter second's worth saved up."""
        bucket = self._bucket
        if bucket is None:
            return
        while not bucket.take(events):
            time.sleep(max(0.001, bucket.seconds_until(events)))

    def _submit(self, batches: list[Batch], pool: ThreadPoolExecutor, inflight: set[Future]) -> None:
        for batch in batches:
            while len(inflight) >= self._options.concurrency:
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                self._finish(done, inflight)
            self.summary.batches += 1
            self.summary.records += len(batch.records)
            inflight.add(pool.submit(self._delivery.deliver, batch))

    def _wait_all(self, inflight: set[Future]) -> None:
        while inflight:
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            self._finish(done, inflight)

    def _finish(self, done: set[Future], inflight: set[Future]) -> None:
        for future in done:
            inflight.discard(future)
            batch = future.result()  # raises Permanent errors: replay stops with a clear error
            with self._lock:
                rejected = self._rejected_per_batch.pop(id(batch), 0)
            self.summary.events += batch.lines - rejected  # acknowledged: counted only now

    def _rejected(self, batch: Batch, record: Record, reason: str) -> None:
        with self._lock:
            self.summary.failed_records += 1
            self._rejected_per_batch[id(batch)] = self._rejected_per_batch.get(id(batch), 0) + 1

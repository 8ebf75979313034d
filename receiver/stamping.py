"""Unique, time-sortable event ids and receive times.

Ids are ULID-shaped: 48 bits of milliseconds since the epoch, then 80 bits that
are random at each new millisecond and counted up within it (so ids from one
worker sort in receive order, and two workers collide with negligible odds),
encoded as 26 characters of base32hex — an alphabet whose ASCII order is its
numeric order, so ids sort as strings.

:func:`serialize_events` stamps a request's events and writes them as the
spool's NDJSON, checking each event's size; its output is reported as it grows
so that the request's memory hold covers it. A batch whose events hold no stamp
field yet gets the stamps written into its lines instead of its dicts
(receiver/stamped_lines.py): the same bytes, a third of the work.
"""

from __future__ import annotations

import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import compress, repeat
from operator import not_, setitem

import orjson

from .errors import TooLarge
from .stamped_lines import serialize_spliced

__all__ = ["IdGenerator", "Stamping", "encode_id", "encode_run", "format_received_at", "serialize_events",
           "serialize_routed"]

_RANDOM_BITS = 80
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1
_BASE32HEX = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
# Two base32hex digits per 10 bits: 128 bits, padded to 130, are 13 lookups.
_PAIRS = [a + b for a in _BASE32HEX for b in _BASE32HEX]


def encode_id(value: int) -> str:
    """26 base32hex digits of a 128-bit value, most significant first (sorts as a string)."""
    v = value << 2
    p = _PAIRS
    return (p[v >> 120] + p[(v >> 110) & 1023] + p[(v >> 100) & 1023] + p[(v >> 90) & 1023]
            + p[(v >> 80) & 1023] + p[(v >> 70) & 1023] + p[(v >> 60) & 1023] + p[(v >> 50) & 1023]
            + p[(v >> 40) & 1023] + p[(v >> 30) & 1023] + p[(v >> 20) & 1023] + p[(v >> 10) & 1023]
            + p[v & 1023])


class IdGenerator:
    """Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0
        self._random = random.Random()  # seeded from os.urandom
        _GENERATORS.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's generator state (the same ids) and lock (maybe held) are not its own."""
        self._lock = threading.Lock()
        self._random = random.Random()
        self._last_ms = -1  # its next id starts at fresh random bits, even within the parent's millisecond

    def new_ids(self, count: int, now_ms: int) -> list[str]:
        # Each new millisecond starts at fresh random bits: from a generator seeded by os.urandom, not
        # os.urandom itself — a syscall per request that let the other threads run (and queue up). A
        # forked child reseeds in os.register_at_fork's hook, not by a getpid() (a syscall) per request.
        fresh = self._random.getrandbits(_RANDOM_BITS - 1)  # room to count up
        with self._lock:
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._counter = fresh
            ms, first = self._last_ms, self._counter
            self._counter += count
        if count == 1:
            return [encode_id((ms << _RANDOM_BITS) | (first & _RANDOM_MASK))]
        return encode_run(ms, first, count)


_GENERATORS: weakref.WeakSet[IdGenerator] = weakref.WeakSet()


def _reseed_after_fork() -> None:
    for generator in list(_GENERATORS):
        generator._after_fork()


os.register_at_fork(after_in_child=_reseed_after_fork)


# The last two digits of an id: its value's low 8 bits (and the 2 padding bits), for each of the 256.
_LOW_DIGITS = [_PAIRS[low << 2] for low in range(256)]


def encode_run(ms: int, first: int, count: int) -> list[str]:
    """The ids of ``ms`` with random parts ``first`` … ``first + count - 1`` (wrapping at 80 bits), encoded.

    The same strings as :func:`encode_id` of each value, at a fraction of the cost: consecutive values
    share all but their last two digits within each aligned block of 256, so each block's prefix is
    encoded once and only the last two digits are looked up per id.
    """
    base = ms << _RANDOM_BITS
    out: list[str] = []
    done = 0
    while done < count:
        value = base | ((first + done) & _RANDOM_MASK)  # a wrap lands on a multiple of 256: never inside a block
        low = value & 255
        take = min(256 - low, count - done)
        prefix = encode_id(value)[:-2]
        out += [prefix + digits for digits in _LOW_DIGITS[low:low + take]]
        done += take
    return out


_second_cache: tuple[int, str] = (-1, "")
_ms_cache: tuple[int, str] = (-1, "")


def format_received_at(now_ms: int | float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-26T07:45:42.123Z``.

    Takes integer milliseconds (a float of seconds is accepted and rounded to
    the nearest millisecond); the date part is cached per second.
    """
    global _second_cache, _ms_cache
    ms = now_ms if isinstance(now_ms, int) else round(now_ms * 1000)
    cached_ms, text = _ms_cache
    if cached_ms == ms:  # several requests a millisecond, under load
        return text
    seconds, millis = divmod(ms, 1000)
    cached_second, prefix = _second_cache
    if cached_second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_cache = (seconds, prefix)
    text = f"{prefix}.{millis:03d}Z"
    _ms_cache = (ms, text)
    return text


@dataclass(frozen=True)
class Stamping:
    """What to add to each event: an id (unless the client sent one) and the receive time; or nothing."""

    enabled: bool = True
    id_field: str = "_id"
    received_at_field: str = "_received_at"


_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE
_MAX_REPORTED_ERRORS = 100
# Report the output's growth to the memory hold every this many bytes.
_REPORT_EVERY_BYTES = 256 * 1024


def _stamp(events: list[dict], stamping: Stamping, ids: IdGenerator, context: dict | None) -> None:
    """Ids (unless the client sent one), one receive time for the request, and the request context."""
    if stamping.enabled:
        now_ms = time.time_ns() // 1_000_000  # one clock reading for the ids and the receive time
        received_at = format_received_at(now_ms)
        id_field, at_field = stamping.id_field, stamping.received_at_field
        if len(events) == 1:
            event = events[0]
            if id_field not in event:
                event[id_field] = ids.new_ids(1, now_ms)[0]
            event[at_field] = received_at
        else:
            # C loops (map over operator.setitem, drained by a zero-length deque): no Python step per event.
            missing = list(compress(events, map(not_, map(dict.__contains__, events, repeat(id_field)))))
            _drain(map(setitem, missing, repeat(id_field), ids.new_ids(len(missing), now_ms)))
            _drain(map(setitem, events, repeat(at_field), repeat(received_at, len(events))))
    if context:
        _drain(map(dict.update, events, repeat(context)))


def _drain(iterator: Iterator) -> None:
    """Run an iterator for its effects, in C."""
    deque(iterator, maxlen=0)


def serialize_events(events: list[dict], stamping: Stamping, ids: IdGenerator, max_event_bytes: int,
                     on_growth: Callable[[int], None] | None = None,
                     context: dict | None = None) -> bytes | bytearray:
    """Stamp and serialize the events as compact NDJSON (one buffer, no copy per line).

    Raises :class:`TooLarge` listing (up to 100) events over ``max_event_bytes``;
    ``on_growth(bytes so far)`` is called as the output grows (it may raise).
    ``context``: fields stamped into every event (receiver/context.py).
    """
    if stamping.enabled and not context and len(events) > 1:
        now_ms = time.time_ns() // 1_000_000  # one clock reading for the ids and the receive time
        spliced = serialize_spliced(events, stamping.id_field, stamping.received_at_field,
                                    format_received_at(now_ms), lambda count: ids.new_ids(count, now_ms),
                                    max_event_bytes, on_growth)
        if spliced is not None:
            return spliced
    return _stamp_and_serialize(events, stamping, ids, max_event_bytes, on_growth, context)


def _stamp_and_serialize(events: list[dict], stamping: Stamping, ids: IdGenerator, max_event_bytes: int,
                         on_growth: Callable[[int], None] | None, context: dict | None) -> bytes | bytearray:
    """The general path of :func:`serialize_events`: stamp the dicts, then serialize them."""
    _stamp(events, stamping, ids, context)
    if len(events) == 1:  # one event (a beacon, or one large event): its line is the output, not copied
        line = orjson.dumps(events[0], option=_APPEND_NEWLINE)
        if len(line) - 1 > max_event_bytes:
            raise TooLarge(f"events larger than {max_event_bytes} bytes (--max-event-bytes)",
                           errors=[{"index": 0, "bytes": len(line) - 1}])
        return line
    out = bytearray()
    too_big = []
    report_at = _REPORT_EVERY_BYTES
    dumps = orjson.dumps
    for index, event in enumerate(events):
        line = dumps(event, option=_APPEND_NEWLINE)
        if len(line) - 1 > max_event_bytes:
            if len(too_big) < _MAX_REPORTED_ERRORS:
                too_big.append({"index": index, "bytes": len(line) - 1})
        elif not too_big:
            out += line
            if on_growth is not None and len(out) >= report_at:
                on_growth(len(out))
                report_at = len(out) + _REPORT_EVERY_BYTES
    if too_big:
        raise TooLarge(f"events larger than {max_event_bytes} bytes (--max-event-bytes)", errors=too_big)
    return out


def serialize_routed(events: list[dict], stamping: Stamping, ids: IdGenerator, max_event_bytes: int,
                     route_of: Callable[[dict], int], on_growth: Callable[[int], None] | None = None,
                     context: dict | None = None) -> list[tuple[int, bytearray]]:
    """As :func:`serialize_events`, each event's line in its route's buffer (in request order within a
    route; the route decided by ``route_of`` before stamping). Returns (route index, lines) for the
    routes that got events, in order of their first event; ``errors`` index the whole request."""
    routes = [route_of(event) for event in events]
    _stamp(events, stamping, ids, context)
    outs: dict[int, bytearray] = {}
    too_big = []
    total = 0
    report_at = _REPORT_EVERY_BYTES
    dumps = orjson.dumps
    for index, (event, route) in enumerate(zip(events, routes, strict=True)):
        line = dumps(event, option=_APPEND_NEWLINE)
        if len(line) - 1 > max_event_bytes:
            if len(too_big) < _MAX_REPORTED_ERRORS:
                too_big.append({"index": index, "bytes": len(line) - 1})
        elif not too_big:
            out = outs.get(route)
            if out is None:
                out = outs[route] = bytearray()
            out += line
            total += len(line)
            if on_growth is not None and total >= report_at:
                on_growth(total)
                report_at = total + _REPORT_EVERY_BYTES
    if too_big:
        raise TooLarge(f"events larger than {max_event_bytes} bytes (--max-event-bytes)", errors=too_big)
    return list(outs.items())

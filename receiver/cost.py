"""What a JSON body will cost in memory, estimated before it is parsed.

orjson builds every value of a body before the receiver can count events, and
the cost per byte depends on the shape: ``[{},{},…]`` costs ~30 bytes of memory
per byte of JSON (a dict, a list slot and yyjson's tape entry for every three
bytes), a long ASCII string ~2. So the receiver counts, at C speed
(``bytes.count``), the bytes that make values expensive — ``{`` ``[`` (a dict or
list each), ``,`` (another value), ``:`` (another key), ``"`` (a string per two),
newlines (an NDJSON line each) — and turns the counts into an upper bound of
the memory the parse needs (:meth:`ParseCost.parse_bytes`). The coefficients
below cover the peak resident memory measured for the worst shapes (each
container, number, string, key and line shape; ``bench/parse_memory.py``
prints the table, ``tests/integration/test_parse_cost.py`` checks it), so the
estimate is an upper bound for every shape and about twice the real cost for
typical events.

A request's memory is then bounded by phases (each holds while it runs):
decoding holds the raw body and the inflated one; parsing holds the inflated
body and the parse; serializing holds the parsed events, their stamps and the
output. :func:`decoding_bytes` and :func:`serializing_bytes` say how much.
"""

from __future__ import annotations

__all__ = ["ParseCost", "decoding_bytes", "serializing_bytes"]

# Fitted to the measured peaks of bench/parse_memory.py (4 MiB bodies, 55 shapes) so that the estimate is at
# least 1.2 times the measured peak for every shape (1.16 for one long string: that cost is exact, below).
# Bytes of memory per byte of body: its string contents, as yyjson copies them and as str objects hold them.
ASCII_BYTES_PER_BYTE = 2.5
WIDE_BYTES_PER_BYTE = 6.0  # one non-ASCII character (or \u escape) makes a str 4 bytes per character
# Bytes of memory per occurrence:
CONTAINER_BYTES = 128  # '{' or '[': a dict (64+) or list (56+) object, its slot, its tape entry, its first value
VALUE_BYTES = 96  # ',': one more value: a slot (8), a tape entry (16) and its object (a number 32, a str 50+)
KEY_BYTES = 56  # ':': one more key: a dict entry with its share of the table, the key's tape entry
QUOTE_BYTES = 20  # '"': a str object's share beyond what its ',' or ':' pays
LINE_BYTES = 40  # '\n': an NDJSON line's own parse
# Per body: yyjson's document and the first blocks of its tape, whatever the size.
BODY_BYTES = 4096
# No body costs more per byte than one of only '[' (and wide strings): pieces shorter than SCAN_FROM_BYTES are
# charged that instead of being scanned — 2 KiB of it is still far from the pool (receiver/budget.py), and a
# beacon's body is then never counted byte by byte.
WORST_BYTES_PER_BYTE = WIDE_BYTES_PER_BYTE + max(CONTAINER_BYTES, VALUE_BYTES, KEY_BYTES, QUOTE_BYTES, LINE_BYTES)
SCAN_FROM_BYTES = 2048
_NOT_COUNTED = bytes(b for b in range(256) if b not in b'{[,:"\n')
_COUNT_SLICE_BYTES = 256 * 1024
# Per event, once parsed: an id str (75 bytes) and the dict growing to hold two more keys.
STAMP_BYTES_PER_EVENT = 400


class ParseCost:
    """Running counts over a body fed in pieces (in order). Not thread-safe."""

    __slots__ = ("length", "unscanned", "containers", "values", "keys", "quotes", "lines", "wide",
                 "_ends_in_backslash")

    def __init__(self) -> None:
        self.length = self.unscanned = 0
        self.containers = self.values = self.keys = self.quotes = self.lines = 0
        self.wide = False  # non-ASCII bytes or \u escapes: strings may be 4 bytes per character
        self._ends_in_backslash = False

    def add(self, piece: bytes | bytearray) -> None:
        self.length += len(piece)
        if len(piece) < SCAN_FROM_BYTES:
            self.unscanned += len(piece)  # charged the worst rate
            self._ends_in_backslash = piece[-1:] == b"\\"
            return
        for start in range(0, len(piece), _COUNT_SLICE_BYTES):
            # bytes.count of one byte is a plain loop (~1.5 ns a byte here); deleting every other byte first is
            # one pass and leaves the counts a string a fifth as long (typical JSON): 3x cheaper, the same counts.
            # In slices, so that the copy stays small beside the body whatever the piece.
            part = piece if len(piece) <= _COUNT_SLICE_BYTES else piece[start:start + _COUNT_SLICE_BYTES]
            count = part.translate(None, _NOT_COUNTED).count
            self.containers += count(b"{") + count(b"[")
            self.values += count(b",")
            self.keys += count(b":")
            self.quotes += count(b'"')
            self.lines += count(b"\n")
        if not self.wide and piece:
            self.wide = (not piece.isascii() or (b"\\" in piece and b"\\u" in piece)  # memchr first: most have none
                         or (self._ends_in_backslash and piece[0] == 0x75))  # 'u' after a '\' cut off
        self._ends_in_backslash = piece[-1:] == b"\\"

    def parse_bytes(self) -> int:
        """An upper bound of the memory that parsing what was fed needs at its peak."""
        per_byte = WIDE_BYTES_PER_BYTE if self.wide else ASCII_BYTES_PER_BYTE
        return (BODY_BYTES + int(WORST_BYTES_PER_BYTE * self.unscanned + per_byte * (self.length - self.unscanned))
                + CONTAINER_BYTES * self.containers + VALUE_BYTES * self.values
                + KEY_BYTES * self.keys + QUOTE_BYTES * self.quotes + LINE_BYTES * self.lines)


def decoding_bytes(raw_bytes: int, cost: ParseCost) -> int:
    """Live while decoding and parsing: the raw body (gzip only, else 0) and the inflated one, then the parse."""
    return max(raw_bytes + cost.length, cost.length + cost.parse_bytes())


def serializing_bytes(cost: ParseCost, events: int, serialized_bytes: int) -> int:
    """Live while stamping and serializing: the parsed events, their stamps and the output so far."""
    return cost.parse_bytes() + STAMP_BYTES_PER_EVENT * events + serialized_bytes

"""What a body costs a worker in memory, per shape: measured peak RSS against the receiver's estimate.

Each shape runs in a fresh process through the receiver's own request path
(``read_events`` → stamping and serialization), with limits out of the way and
malloc pinned as in a worker (``receiver/malloc.py``), and
its peak resident memory is measured with the kernel's high-water mark
(``/proc/self/clear_refs`` resets it; Linux only). Printed per shape: bytes of
memory per byte of body, measured and estimated (``receiver/cost.py``) for the
decode+parse phase and the serialize phase, and their ratio (estimate ≥ measured
is the bound's promise). tests/integration/test_parse_cost.py checks the same
table at a smaller size.

    .venv/bin/python bench/parse_memory.py [--mib 4] [--shape NAME]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TYPICAL = (b'{"type":"page_view","url":"https://shop.example/products/12345?ref=abc","user":{"id":"u-1234567",'
           b'"tags":["a","b","c"]},"ts":1700000000123,"props":{"x":1.5,"y":2,"z":"hello world"},'
           b'"ua":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"}')


def repeat(unit: bytes, size: int, head: bytes = b"[", tail: bytes = b"]", sep: bytes = b",") -> bytes:
    count = max(1, (size - len(head) - len(tail)) // (len(unit) + len(sep)))
    return head + (unit + sep) * (count - 1) + unit + tail


def unique_keys(value: bytes, size: int, width: int = 0) -> bytes:
    out = bytearray(b'{"k":{')
    i = 0
    while len(out) < size:
        out += b'"%0*x":%s,' % (width, i, value)
        i += 1
    out[-1:] = b"}}"
    return bytes(out)


def unique_strings(size: int) -> bytes:
    out = bytearray(b'{"a":[')
    i = 0
    while len(out) < size:
        out += b'"%x",' % i
        i += 1
    out[-1:] = b"]}"
    return bytes(out)


def in_event(unit: bytes, size: int) -> bytes:
    return repeat(unit, size, head=b'{"a":[', tail=b"]}")


# name -> (content type, gzip?, body of about `size` bytes)
SHAPES = {
    "events [{},{},...]": ("json", False, lambda n: repeat(b"{}", n)),
    "events [{},...] gzip": ("json", True, lambda n: repeat(b"{}", n)),
    "events [{\"\":0},...]": ("json", False, lambda n: repeat(b'{"":0}', n)),
    "events [{\"a\":1},...]": ("json", False, lambda n: repeat(b'{"a":1}', n)),
    "events [{\"a\":[]},...]": ("json", False, lambda n: repeat(b'{"a":[]}', n)),
    "events [{8 keys},...]": ("json", False, lambda n: repeat(b'{"a":0,"b":0,"c":0,"d":0,"e":0,"f":0,"g":0,"h":0}', n)),
    "events [{5 keys},...]": ("json", False, lambda n: repeat(b'{"a":0,"b":0,"c":0,"d":0,"e":0}', n)),
    "events [{10 keys},...]": ("json", False, lambda n: repeat(b'{' + b",".join(b'"%c":0' % c for c in b"abcdefghij") + b'}', n)),
    "events [{\"a\":\"b\"},...]": ("json", False, lambda n: repeat(b'{"a":"b"}', n)),
    "events [{\"a\":1.5,\"b\":\"xy\"},...]": ("json", False, lambda n: repeat(b'{"a":1.5,"b":"xy"}', n)),
    "events [{\"a\":{\"b\":{}}},...]": ("json", False, lambda n: repeat(b'{"a":{"b":{}}}', n)),
    "ndjson {}": ("ndjson", False, lambda n: b"{}\n" * (n // 3)),
    "ndjson []": ("ndjson", False, lambda n: b"[]\n" * (n // 3)),
    "ndjson \"a\"": ("ndjson", False, lambda n: b'"a"\n' * (n // 4)),
    "ndjson {} gzip": ("ndjson", True, lambda n: b"{}\n" * (n // 3)),
    "ndjson {\"a\":1}": ("ndjson", False, lambda n: b'{"a":1}\n' * (n // 8)),
    "typical events": ("json", False, lambda n: repeat(TYPICAL, n)),
    "typical events gzip": ("json", True, lambda n: repeat(TYPICAL, n)),
    "typical ndjson": ("ndjson", False, lambda n: (TYPICAL + b"\n") * (n // (len(TYPICAL) + 1))),
    "event of [] []": ("json", False, lambda n: in_event(b"[]", n)),
    "event of {} {}": ("json", False, lambda n: in_event(b"{}", n)),
    "event of [[]] [[]]": ("json", False, lambda n: in_event(b"[[]]", n)),
    "event of [\"a\"]": ("json", False, lambda n: in_event(b'["a"]', n)),
    "event of [0]": ("json", False, lambda n: in_event(b"[0]", n)),
    "event of [[[[]]]]": ("json", False, lambda n: in_event(b"[[[[]]]]", n)),
    "event of {\"b\":[]}": ("json", False, lambda n: in_event(b'{"b":[]}', n)),
    "event of 0 0": ("json", False, lambda n: in_event(b"0", n)),
    "event of 1000": ("json", False, lambda n: in_event(b"1000", n)),
    "event of 1.5": ("json", False, lambda n: in_event(b"1.5", n)),
    "event of 1e5": ("json", False, lambda n: in_event(b"1e5", n)),
    "event of 9e15": ("json", False, lambda n: in_event(b"9e15", n)),
    "event of huge ints": ("json", False, lambda n: in_event(b"9" * 30, n)),
    "event of true": ("json", False, lambda n: in_event(b"true", n)),
    "event of \"\"": ("json", False, lambda n: in_event(b'""', n)),
    "event of \"a\"": ("json", False, lambda n: in_event(b'"a"', n)),
    "event of \"ab\"": ("json", False, lambda n: in_event(b'"ab"', n)),
    "event of \"\\u00e9\"": ("json", False, lambda n: in_event(b'"\\u00e9"', n)),
    "event of \"é\"": ("json", False, lambda n: in_event('"é"'.encode(), n)),
    "event of emoji": ("json", False, lambda n: in_event('"😀"'.encode(), n)),
    "event of unique strings": ("json", False, lambda n: unique_strings(n)),
    "event of unique keys :0": ("json", False, lambda n: unique_keys(b"0", n)),
    "event of unique keys :{}": ("json", False, lambda n: unique_keys(b"{}", n)),
    "event of unique keys :\"\"": ("json", False, lambda n: unique_keys(b'""', n)),
    "event of long unique keys": ("json", False, lambda n: unique_keys(b"[]", n, width=60)),
    "long ascii string": ("json", False, lambda n: b'{"s":"' + b"a" * (n - 8) + b'"}'),
    "long ascii string gzip": ("json", True, lambda n: b'{"s":"' + b"a" * (n - 8) + b'"}'),
    "long string, one emoji": ("json", False, lambda n: b'{"s":"\xf0\x9f\x98\x80' + b"a" * (n - 12) + b'"}'),
    "long string, \\u escapes": ("json", False, lambda n: b'{"s":"' + b"\\u00e9" * ((n - 8) // 6) + b'"}'),
    "long string, astral escape": ("json", False, lambda n: b'{"s":"\\ud83d\\ude00' + b"a" * (n - 20) + b'"}'),
    "whitespace padded": ("json", False, lambda n: repeat(b"{}", n, sep=b" ,\n ")),
}
TYPES = {"json": "application/json", "ndjson": "application/x-ndjson"}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def measure_one(name: str, size: int) -> dict:
    """In this process: run one shape through the request path; peak memory per phase, and the estimates."""
    from receiver.body import BodyLimits, read_events
    from receiver.budget import MemoryBudget
    from receiver.cost import serializing_bytes
    from receiver.errors import ApiError
    from receiver.malloc import pin_malloc

    pin_malloc()  # as a worker does (spoolship receive), so that freed buffers leave the process
    from receiver.stamping import IdGenerator, Stamping, serialize_events

    kind, gzipped, make = SHAPES[name]
    raw = make(size)
    length = len(raw)
    if gzipped:
        raw = gzip.compress(raw, compresslevel=1)
    raw_len = len(raw)
    limits = BodyLimits(max_inflated_bytes=1 << 40, max_event_bytes=1 << 40, max_events=1 << 40, max_depth=64)
    hold = MemoryBudget(1 << 40).hold()
    gc.collect()
    base = _status("VmRSS")  # includes raw, which the request path counts too
    _reset_peak()
    try:
        events, cost = read_events(raw, "gzip" if gzipped else None, TYPES[kind], limits, hold)
    except ApiError as exc:  # refused after parsing (not objects): the parse still cost what it cost
        refused = exc.message
    else:
        refused = None
    del raw
    decode_peak = _status("VmHWM") - base + raw_len
    decode_estimate = hold.needed_bytes
    row = {"shape": name, "body_bytes": length, "decode_peak": decode_peak, "decode_estimate": decode_estimate}
    if refused:
        return {**row, "refused": refused, "serialize_peak": decode_peak, "serialize_estimate": decode_estimate}
    gc.collect()
    _reset_peak()

    def grown(nbytes: int) -> None:
        hold.need(serializing_bytes(cost, len(events), nbytes))

    grown(cost.length)
    data = serialize_events(events, Stamping(), IdGenerator(), 1 << 40, grown)
    serialize_peak = _status("VmHWM") - base + raw_len
    return {**row, "events": len(events), "output_bytes": len(data),
            "serialize_peak": serialize_peak, "serialize_estimate": hold.needed_bytes}


def measure(name: str, size: int) -> dict:
    """One shape in a fresh interpreter, so that no earlier shape's freed memory hides this one's."""
    out = subprocess.run([sys.executable, __file__, "--child", name, "--bytes", str(size)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=4.0, help="body size per shape (MiB)")
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shape", action="append", help="only these shapes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.bytes or int(args.mib * 1024 * 1024)
    if args.child:
        print(json.dumps(measure_one(args.child, size)))
        return
    from bench.common import report

    rows = [measure(name, size) for name in (args.shape or SHAPES)]
    print(f"{'shape':30s} {'bytes':>9s}  {'decode+parse /byte':>20s}  {'serialize /byte':>18s}  estimate/peak")
    for r in rows:
        n = r["body_bytes"]
        print(f"{r['shape']:30s} {n:9d}  {r['decode_peak'] / n:8.1f} est {r['decode_estimate'] / n:6.1f}"
              f"  {r['serialize_peak'] / n:7.1f} est {r['serialize_estimate'] / n:6.1f}"
              f"  {r['decode_estimate'] / r['decode_peak']:5.2f} {r['serialize_estimate'] / r['serialize_peak']:5.2f}")
    worst = max(rows, key=lambda r: max(r["decode_peak"], r["serialize_peak"]) / r["body_bytes"])
    report("parse_memory", {
        "body_bytes": size,
        "worst_shape": worst["shape"],
        "worst_peak_bytes_per_byte": round(max(worst["decode_peak"], worst["serialize_peak"]) / worst["body_bytes"], 2),
        "min_estimate_over_peak": round(min(min(r["decode_estimate"] / r["decode_peak"],
                                                r["serialize_estimate"] / r["serialize_peak"]) for r in rows), 2),
        "shapes": rows,
    }, figures(rows, size))


def figures(rows: list[dict], size: int) -> dict:
    """The worst estimate/peak over every shape, against the worst shape's measured peak per byte."""
    from bench.verdict import Baseline

    ratio = min(min(r["decode_estimate"] / r["decode_peak"], r["serialize_estimate"] / r["serialize_peak"])
                for r in rows)
    worst = max(max(r["decode_peak"], r["serialize_peak"]) / r["body_bytes"] for r in rows)
    return {"parse_memory.estimate_over_peak": (
        {"shapes": len(rows), "body size": round(size / 2**20, 2)}, round(ratio, 3),
        Baseline("measured peak bytes per body byte, worst shape (kernel high-water mark)", round(worst, 2)))}


if __name__ == "__main__":
    main()

"""Load from wrk (C): closed-loop throughput, or paced at a fixed rate, with wrk's own CPU.

Paced load is wrk with a Lua ``delay()`` (wrk2 is not packaged by Debian): each call
claims the next slot of a fixed schedule, ``1/rate`` apart, read from
CLOCK_MONOTONIC through LuaJIT's ffi, so the rate does not drift with response
times; several connections keep a slow answer from holding the schedule up, and
a connection that falls behind catches up at most ``MAX_DEBT_MS`` late. What the
load generator itself cost is measured, not assumed: its user+sys CPU from
``wait4`` (``cpu_cores`` = CPU-seconds / wall-seconds).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["MAX_DEBT_MS", "parse_wrk", "wrk", "wrk_paced"]

# A level-2 long string: a JSON array ends in "}]", which would close a plain [[ ... ]] early.
POST_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
"""
MAX_DEBT_MS = 1000
PACING_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval_ms = %r
local next_at = nil
function delay()
  local now = now_ms()
  if next_at == nil then next_at = now end
  if next_at < now - %d then next_at = now - %d end
  local wait = next_at - now
  next_at = next_at + interval_ms
  if wait < 0 then return 0 end
  return wait
end
"""


def parse_wrk(out: str) -> dict:
    """wrk's summary → requests, seconds, rps, non-2xx, socket errors, p50/p99 (ms)."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    if done is None:
        raise ValueError(f"not a wrk summary: {out[-500:]!r}")
    requests = int(done.group(1))
    seconds = float(done.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]

    def pct(p: str) -> float | None:
        found = re.search(rf"\s{p}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\b", out)
        if found is None:
            return None
        return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[found.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = int(non2xx.group(1)) if non2xx else 0
    kinds = dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)) if errors \
        else dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    return {
        "requests": requests, "seconds": round(seconds, 3), "non_2xx": non_2xx, "accepted": requests - non_2xx,
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "socket_errors": sum(kinds.values()), "socket_errors_by_kind": kinds,
        "p50_ms": pct("50"), "p99_ms": pct("99"),
    }


def _run(script: str, port: int, seconds: float, connections: int, path: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        lua, out_path = Path(tmp) / "load.lua", Path(tmp) / "out"
        lua.write_text(script)
        with out_path.open("w") as out:
            process = subprocess.Popen(
                ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(lua),
                 f"http://127.0.0.1:{port}{path}"], stdout=out, stderr=subprocess.STDOUT)
            started = time.monotonic()
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.monotonic() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        text = out_path.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited {process.returncode}: {text[-2000:]}")
    result = parse_wrk(text)
    cpu = usage.ru_utime + usage.ru_stime
    result.update(connections=connections, wrk_cpu_seconds=round(cpu, 3), wrk_cpu_cores=round(cpu / wall, 3))
    return result


def wrk(port: int, body: bytes, seconds: float, connections: int, *, expect_2xx: bool = True,
        path: str = "/v1/events") -> dict:
    """Closed-loop POSTs as fast as answered.

    A non-2xx answer in a throughput run is a broken set-up (an error); socket errors
    (wrk's 2 s timeouts on a stalled machine, resets) are counted for the verdicts.
    """
    result = _run(POST_LUA % body.decode(), port, seconds, connections, path)
    if expect_2xx and result["non_2xx"]:
        raise RuntimeError(f"{result['non_2xx']} non-2xx answers in a throughput run: the numbers would be "
                           "meaningless")
    return result


def wrk_paced(port: int, body: bytes, rate: float, seconds: float, connections: int = 16,
              path: str = "/v1/events") -> dict:
    """POSTs at ``rate`` per second (one wrk thread); ``achieved_rate`` is what the server accepted."""
    script = POST_LUA % body.decode() + PACING_LUA % (1000.0 / rate, MAX_DEBT_MS, MAX_DEBT_MS)
    result = _run(script, port, seconds, connections, path)
    result.update(target_rate=rate, achieved_rate=round(result["accepted"] / result["seconds"], 1))
    return result

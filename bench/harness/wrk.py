"""HTTP load with wrk (a C load generator): POSTs of one body, every answer checked.

wrk runs as its own process, so its CPU is measured apart from the server's (from
wait4's resource usage): a reader sees whether the load generator was the bottleneck.
A Lua script (`check.lua`) sets the method, body and headers, and checks each answer
against a reference answer fetched and checked in Python before the load: the status
must be 200 and the body the reference's bytes (or, when the server's bytes vary from
one answer to the next, as gzip's header time does, their length).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.harness.servers import BenchError

__all__ = ["WrkResult", "require_wrk", "run_wrk"]

_SCRIPT = Path(__file__).with_name("check.lua")
_MARK = "BENCH-WRK-RESULT "


def require_wrk() -> str:
    """wrk's path, or BenchError saying how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is needed to drive the HTTP load: apt-get install -y wrk (Debian/Ubuntu)")
    return found


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    p50: float  # seconds, as wrk measured them (send to last byte)
    p99: float
    wire_bytes: int  # everything read: status lines, headers, bodies
    wrk_cpu: float  # CPU seconds wrk itself used (user + system)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def run_wrk(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    expected: bytes,
    seconds: int,
    connections: int,
    threads: int = 1,
    exact: bool = True,
) -> WrkResult:
    """`connections` keep-alive connections POST `body` for `seconds` (closed loop: each
    sends its next request when the last is answered). BenchError when any answer is not
    200 with the `expected` bytes (`exact=False`: of their length), or on a socket error."""
    wrk = require_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        files = {"body": body, "expected": expected}
        for name, content in files.items():
            (Path(tmp) / name).write_bytes(content)
        (Path(tmp) / "headers").write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
        env = {
            **os.environ,
            "BENCH_WRK_BODY": str(Path(tmp) / "body"),
            "BENCH_WRK_HEADERS": str(Path(tmp) / "headers"),
            "BENCH_WRK_EXPECTED": str(Path(tmp) / "expected"),
            "BENCH_WRK_EXACT": "1" if exact else "0",
        }
        command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s"]
        command += ["--timeout", "30s", "-s", str(_SCRIPT), url]
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 (wrk, found on PATH)
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
        # wait4 rather than Popen.wait: it hands back the child's own resource usage.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
    line = next((x for x in output.splitlines() if x.startswith(_MARK)), None)
    if process.returncode or line is None:
        raise BenchError(f"wrk failed ({process.returncode}):\n{output[-3000:]}")
    found = json.loads(line[len(_MARK) :])
    errors = {k: v for k, v in found["errors"].items() if v}
    if found["wrong"] or errors:
        raise BenchError(
            f"{url}: {found['wrong']:,} wrong answers of {found['requests']:,} "
            f"(first: {found['first_wrong']}), socket errors {errors or 'none'}"
        )
    if not found["requests"]:
        raise BenchError(f"{url}: no answer in {seconds} s (wall {elapsed:.1f} s)")
    return WrkResult(
        requests=found["requests"],
        seconds=found["duration_us"] / 1e6,
        p50=found["p50_us"] / 1e6,
        p99=found["p99_us"] / 1e6,
        wire_bytes=found["bytes"],
        wrk_cpu=usage.ru_utime + usage.ru_stime,
    )

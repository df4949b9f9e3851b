"""CPU accounting from /proc: a process (and its children), PostgreSQL backends, the machine.

On a shared 2-core machine req/s moves with other people's work; CPU seconds per
request move much less, so the benchmarks report both.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuUse",
    "CpuWindow",
    "PgBackendCpu",
    "machine_cpu",
    "pg_backends",
    "proc_cpu",
    "proc_status_kib",
    "tree_cpu",
]

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        # The command name (field 2) may hold spaces and parentheses: split after its last ")".
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def _children(pids: set[int]) -> set[int]:
    found = set(pids)
    grew = True
    while grew:
        grew = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in found:
                fields = _stat_fields(int(entry.name))
                if fields is not None and int(fields[1]) in found:
                    found.add(int(entry.name))
                    grew = True
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants (`serve --workers N`)."""
    return sum(proc_cpu(p) for p in _children({pid}))


def proc_status_kib(pid: int, name: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(f"no {name} in /proc/{pid}/status")


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy so far (every core, /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def pg_backends(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to `database`, found by process title
    ("postgres: <user> <database> <host> ...": the server must run on this machine)."""
    needle = f" {database} ".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and needle in title:
            found[int(entry.name)] = proc_cpu(int(entry.name))
    return found


class PgBackendCpu:
    """CPU used by a database's backends over a window, including backends that connect or
    disconnect during it: polled every `interval` seconds from a thread (a pool that closes
    idle connections would otherwise hide their work)."""

    def __init__(self, database: str, interval: float = 0.5) -> None:
        self.database = database
        self.first = pg_backends(database)
        self.last = dict(self.first)
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        for pid, cpu in pg_backends(self.database).items():
            self.first.setdefault(pid, 0.0)  # connected during the window
            self.last[pid] = cpu

    def stop(self) -> float:
        """CPU seconds used since the start."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds used over a window of `wall` seconds."""

    wall: float
    server: float
    postgres: float
    here: float  # this process (a load generator or client that runs in it)
    machine: float  # every process of the machine

    def share(self, seconds: float) -> float:
        """CPU seconds as a share of one core over the window."""
        return seconds / self.wall if self.wall else 0.0

    def other(self, *counted: float) -> float:
        """What the rest of the machine used: other people's work on a shared machine."""
        return max(0.0, self.machine - self.server - self.postgres - self.here - sum(counted))


class CpuWindow:
    """Start, do the work, `stop()`: the CPU the server process(es) (with their children),
    the database's PostgreSQL backends, this process and the machine used meanwhile."""

    def __init__(self, server_pids: Iterable[int], database: str | None = None) -> None:
        self.server_pids = list(server_pids)
        self.pg = PgBackendCpu(database) if database else None
        self.server_before = sum(tree_cpu(p) for p in self.server_pids)
        self.here_before = time.process_time()
        self.machine_before = machine_cpu()
        self.started = time.perf_counter()

    def stop(self) -> CpuUse:
        wall = time.perf_counter() - self.started
        postgres = self.pg.stop() if self.pg is not None else 0.0
        return CpuUse(
            wall=wall,
            server=sum(tree_cpu(p) for p in self.server_pids) - self.server_before,
            postgres=postgres,
            here=time.process_time() - self.here_before,
            machine=machine_cpu() - self.machine_before,
        )

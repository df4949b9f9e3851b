"""py-spy sampling a server process, and what its collapsed stacks say.

py-spy is not a dependency: `python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy`,
then pass its path. It samples from outside, so the server runs at full speed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["PySpy", "Stacks", "read_stacks", "shares"]

Stacks = list[tuple[list[str], int]]


class PySpy:
    """`py-spy record` on a process until `stop()` (or for `duration` seconds)."""

    def __init__(
        self, binary: str, pid: int, out: Path, rate: int = 250, threads: bool = False, duration: int | None = None
    ) -> None:
        self.out = out
        self.rate = rate
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [binary, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
        command += ["--rate", str(rate), "--nonblocking"]
        if threads:
            command += ["--threads", "--function"]
        if duration is not None:
            command += ["--duration", str(duration)]
        self.process = subprocess.Popen(  # noqa: S603 (the py-spy the user named)
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self) -> Stacks | None:
        """Its samples, or None (and why on stderr) when it wrote nothing."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self.out.exists():
            error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            print(f"  py-spy wrote nothing: {error[-2000:]}", file=sys.stderr)
            return None
        return read_stacks(self.out)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def read_stacks(path: Path) -> Stacks:
    """(frames root first, samples) of py-spy's raw (collapsed) output."""
    stacks: Stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def shares(stacks: Stacks, top: int = 30, keep: str = "") -> list[str]:
    """Inclusive and self shares of the busy samples, as report lines; `keep` names a prefix
    to cut from frame names (a source root)."""
    total = sum(c for _, c in stacks)
    if not total:
        return ["  (no samples)"]
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1] if frames else "<no Python frame: in C (event loop, I/O)>"] += count

    def short(frame: str) -> str:
        return frame.replace(keep, "") if keep else frame

    lines = ["  inclusive share of busy samples:"]
    lines += [f"    {c / total:6.1%}  {short(f)}" for f, c in inclusive.most_common(top)]
    lines.append("  self time (leaf frames):")
    lines += [f"    {c / total:6.1%}  {short(f)}" for f, c in own.most_common(top)]
    return lines

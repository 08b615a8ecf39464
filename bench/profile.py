"""Optional: a ``py-spy`` profile of the server during each measured window (``--py-spy DIR``).

py-spy samples the server from outside (``--nonblocking``: it never pauses the
server) and runs on the load core, but it still costs that core some CPU, so
figures of a profiled run are not for the record. ``DIR`` gets one collapsed
stack file per server and scenario (``flamegraph.pl`` or speedscope read it)
and a short summary: the functions with the most samples, by own time and by
time including callees.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("bench: --py-spy needs py-spy (pip install py-spy)")
    return found


class PySpy:
    """``py-spy record`` of one process, from :meth:`start` until :meth:`stop`."""

    def __init__(self, pid: int, output: Path, rate: int = 250) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [py_spy_binary(), "record", "--pid", str(self.pid), "--rate", str(self.rate),
             "--nonblocking", "--format", "raw", "--output", str(self.output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (path)``: lines of one function add up."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarise(raw: Path, top: int = 12) -> str:
    """The top functions of a collapsed-stack file (py-spy's samples with the
    server on CPU), by own samples and by samples including callees; frames on
    (nearly) every stack, the entry points, are left out of the second list."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_function(frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return f"{raw.name}: no samples"
    entry = 0.98 * max(inclusive.values())
    callers = [(f, n) for f, n in inclusive.most_common() if n < entry][:top]
    lines = [f"{raw.name}: {total} samples on CPU", "  own time:"]
    lines += [f"    {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("  including callees:")
    lines += [f"    {n / total:6.1%}  {frame}" for frame, n in callers]
    return "\n".join(lines)

"""What the benchmark reads from /proc, and the event-loop choice."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import resource
from collections.abc import Coroutine
from typing import Any

LOOPS = ("uvloop", "asyncio")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    # After the command name: state is fields[0], so utime (14th) is [11], stime [12].
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_seconds() -> float:
    """CPU time the hypervisor gave to others, all cores, from /proc/stat: a
    window with much of it ran on a busy host and its figures are noisier."""
    with open("/proc/stat") as file:
        fields = file.readline().split()
    return int(fields[8]) / os.sysconf(
        "SC_CLK_TCK"
    )  # cpu user nice system idle iowait irq softirq steal


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB (``VmRSS`` of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def loaded_uvloop(pid: int) -> bool:
    """Whether uvloop's extension module is mapped into the process: the check
    that a server really runs the loop it was asked for."""
    with open(f"/proc/{pid}/maps") as file:
        return any("uvloop/loop." in line for line in file)


def raise_open_files() -> int:
    """Raise the soft open-files limit to the hard one; thousands of sockets need it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def default_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when it is importable (``bench.launch`` can hide it), else asyncio."""
    if default_loop() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)

"""Start a server module pinned to one core, on a chosen event loop.

``python -m bench.launch LOOP CORE MODULE ARGS…``

Both servers pick uvloop when it is importable (fieldpush through uvicorn's
``loop`` setting, the baseline through :func:`bench.procstat.run`). For
``asyncio`` this launcher hides uvloop (``sys.modules["uvloop"] = None`` makes
``find_spec`` return None and ``import uvloop`` fail) and then runs the module
as ``__main__`` in this same process, so the pid the benchmark measures is the
server's. Before anything else it pins itself to CORE (every thread it
starts later inherits that) and raises its open-files limit to the hard limit.
"""

from __future__ import annotations

import os
import runpy
import sys

from bench.procstat import LOOPS, raise_open_files


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[1] not in LOOPS or not sys.argv[2].isdigit():
        usage = f"{{{'|'.join(LOOPS)}}} CORE MODULE [ARGS...]"
        raise SystemExit(f"usage: python -m bench.launch {usage}")
    loop, core, module = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.sched_setaffinity(0, {core})
    raise_open_files()
    if loop == "asyncio":
        sys.modules["uvloop"] = None  # type: ignore[assignment]
    sys.argv = [module, *sys.argv[4:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

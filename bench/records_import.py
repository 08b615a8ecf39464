"""``fieldpush records import`` rate: records per second, first run and again.

``python -m bench.records_import [--records 10000] [--runs 3]``

Writes a JSON Lines file of ``--records`` customers, starts ``fieldpush serve``
(memory backend, port 0) and times the real command ``records import`` on it
``--runs`` times: the first run writes every record, the later ones find them
unchanged. Prints one line per run (seconds, records/s, the command's
summary). To measure another tree (a checkout of main), run this with
``PYTHONPATH=<tree>/server``: the server and the command both import it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_LISTENING = re.compile(r"listening on (https?://\S+)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.records_import")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    command = [str(Path(sys.executable).parent / "fieldpush")]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "records.jsonl"
        with path.open("w") as out:
            for i in range(args.records):
                fields = {"name": f"Customer {i}", "owner": f"user{i % 50}", "budget": str(i)}
                out.write(json.dumps({"type": "customer", "rid": f"c{i}", "fields": fields}))
                out.write("\n")
        server = subprocess.Popen(
            [*command, "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert server.stdout is not None
            url = ""
            for line in server.stdout:
                found = _LISTENING.search(line)
                if found:
                    url = found.group(1)
                    break
            if not url:
                raise SystemExit("fieldpush serve did not start")
            for run in range(1, args.runs + 1):
                started = time.perf_counter()
                done = subprocess.run(
                    [*command, "records", "import", str(path), "--url", url],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                seconds = time.perf_counter() - started
                summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
                print(
                    f"run {run}: {seconds:.2f} s, {args.records / seconds:,.0f} records/s"
                    f" ({summary}; exit {done.returncode})"
                )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()

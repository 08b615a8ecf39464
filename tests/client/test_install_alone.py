"""The SDK installs and imports on its own: ``pip install client_sdk`` in a
fresh virtual environment brings no server dependency and no server code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fieldpush_client
from tests.support.timing import scaled

SDK = Path(__file__).resolve().parents[2] / "client_sdk"
SERVER_ONLY = ["fieldpush", "starlette", "uvicorn", "hiredis", "uvloop", "jwt"]

CHECK = """
import importlib.util, json
import fieldpush_client, fieldpush_client.protocol
print(json.dumps({name: importlib.util.find_spec(name) is not None for name in %r}))
"""


def _run(*command: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.e2e
def test_the_sdk_installs_alone_without_server_dependencies(tmp_path: Path) -> None:
    source = tmp_path / "client_sdk"  # a copy: the build leaves nothing in the checkout
    shutil.copytree(
        SDK, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    _run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", source, cwd=tmp_path)

    found = json.loads(_run(python, "-I", "-c", CHECK % SERVER_ONLY, cwd=tmp_path))
    assert found == dict.fromkeys(SERVER_ONLY, False)

    shown = _run(python, "-m", "pip", "show", "-f", "fieldpush-client", cwd=tmp_path)
    files = shown.split("Files:\n", 1)[1].split()
    assert "fieldpush_client/protocol/__init__.py" in files
    dist_info = f"fieldpush_client-{fieldpush_client.__version__}.dist-info/"
    strays = [name for name in files if not name.startswith(("fieldpush_client/", dist_info))]
    assert strays == []

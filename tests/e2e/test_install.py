"""What `pip install .` puts into site-packages, and that it runs from anywhere.

The wheel is built from this checkout and installed with ``--target`` into a temporary
folder; the project venv supplies only the third-party dependencies. So the tests see
exactly the files a user's ``pip install .`` writes, not the editable checkout.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import fieldpush
import fieldpush_client
from tests.support.timing import scaled

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the root distribution, built from a copy of this checkout (so
    that no stale ``build/`` folder of an earlier build can add files to it)."""
    source = tmp_path_factory.mktemp("source") / "fieldpush"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"),
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=scaled(180),
    )
    (found,) = out.glob("fieldpush-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding what installing the wheel writes (``pip install --target``)."""
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run(
        [*pip, "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=scaled(120),
    )
    return target


def _record(wheel: Path) -> Iterator[str]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        yield from (row[0] for row in csv.reader(archive.read(name).decode().splitlines()))


def test_the_wheel_installs_only_the_two_packages(wheel: Path) -> None:
    top = {path.split("/", 1)[0] for path in _record(wheel)}
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert top - dist_info == {"fieldpush", "fieldpush_client"}


def test_the_wheel_ships_the_default_config_and_lua_scripts(wheel: Path) -> None:
    files = set(_record(wheel))
    for name in ("schema.toml", "mappings.toml", "fieldpush.toml"):
        assert f"fieldpush/defaults/{name}" in files
        shipped = (ROOT / "server/fieldpush/defaults" / name).read_bytes()
        assert shipped == (ROOT / "config" / name).read_bytes(), f"{name}: copies differ"
    assert "fieldpush/backend/redis/lua/publish.lua" in files


def test_versions_agree() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    sdk = tomllib.loads((ROOT / "client_sdk/pyproject.toml").read_text())["project"]["version"]
    assert fieldpush.__version__ == fieldpush_client.__version__ == root == sdk


def _env(installed: Path) -> dict[str, str]:
    """Import from the installed folder first, then the venv's dependencies."""
    return {**os.environ, "PYTHONPATH": str(installed), "PYTHONUNBUFFERED": "1"}


def test_version_from_a_folder_that_shadows_the_old_names(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text("raise SystemExit('shadowed')\n")
    (tmp_path / "client_sdk.py").write_text("raise SystemExit('shadowed')\n")
    result = subprocess.run(
        [sys.executable, "-m", "fieldpush.cli", "--version"],
        cwd=tmp_path,
        env=_env(installed),
        capture_output=True,
        text=True,
        timeout=scaled(30),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"fieldpush {fieldpush.__version__}"


def test_serve_from_any_folder_loads_the_shipped_config(installed: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "fieldpush.cli", "serve", "--port", "0"],
        cwd=tmp_path,
        env=_env(installed),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if "listening on" in line:
                    break
        finally:
            process.terminate()
            process.wait(timeout=scaled(20))
    log = "".join(lines)
    assert "listening on http://127.0.0.1:" in log, log
    defaults = installed / "fieldpush" / "defaults"
    assert f"schema {defaults / 'schema.toml'}" in log, log
    assert f"mappings {defaults / 'mappings.toml'}" in log, log

"""The protocol package's shape: Sans-I/O, and every name of the old
``fieldpush_client/protocol.py`` still importable from the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fieldpush_client import protocol
from fieldpush_client.protocol import limits

PACKAGE = Path(protocol.__file__).parent

#: All a protocol module may import: pure standard modules, msgpack, itself.
ALLOWED = frozenset(
    {"__future__", "collections", "dataclasses", "enum", "json", "struct", "typing"}
    # pure computation, for the drift digests (digest.py)
    | {"decimal", "hashlib", "math"}
)

#: The package's public names, pinned: ``name``, or ``name old`` for what
#: ``fieldpush_client/protocol.py`` offered before it became a package.
NAMES_FILE = Path(__file__).with_name("public_names.txt")


def _pinned() -> dict[str, bool]:
    """Each pinned name, and whether it is an old one."""
    pinned: dict[str, bool] = {}
    for line in NAMES_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, mark = line.partition(" ")
            assert mark in ("", "old") and name not in pinned, f"{NAMES_FILE.name}: {line!r}"
            pinned[name] = mark == "old"
    return pinned


PINNED = _pinned()
OLD_NAMES = [name for name, old in PINNED.items() if old]
#: How many names the old module offered: none may lose its mark.
OLD_COUNT = 49


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            found.add(node.module or "")
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_protocol_modules_do_no_io(path: Path) -> None:
    for name in _imports(path):
        top = name.partition(".")[0]
        if top == "fieldpush_client":
            assert name.startswith("fieldpush_client.protocol."), f"{path.name} imports {name}"
        else:
            assert top in ALLOWED or top == "msgpack", f"{path.name} imports {name}"


def test_every_old_name_is_still_exported() -> None:
    assert len(OLD_NAMES) == OLD_COUNT
    missing = [name for name in OLD_NAMES if not hasattr(protocol, name)]
    assert missing == []
    assert set(OLD_NAMES) <= set(protocol.__all__)


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(protocol) if not name.startswith("_")}
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert set(protocol.__all__) == public - modules


def test_the_public_names_are_the_pinned_ones() -> None:
    assert sorted(protocol.__all__) == sorted(PINNED)


def test_every_limit_is_exported() -> None:
    defined = {name for name in vars(limits) if name.startswith("MAX_")}
    assert defined
    assert defined <= set(protocol.__all__)

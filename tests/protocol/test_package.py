"""The protocol package's shape: Sans-I/O, and every name of the old
``fieldpush_client/protocol.py`` still importable from the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fieldpush_client import protocol

PACKAGE = Path(protocol.__file__).parent

#: All a protocol module may import: pure standard modules, msgpack, itself.
ALLOWED = frozenset(
    {"__future__", "collections", "dataclasses", "enum", "json", "struct", "typing"}
)

#: What ``fieldpush_client/protocol.py`` offered before it became a package.
OLD_NAMES = [
    "CHANNEL_KINDS",
    "DEFAULT_SUBPROTOCOL",
    "FATAL_CLOSE_CODES",
    "MAX_CHANNEL_LENGTH",
    "MAX_DEVICE_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_MUTATIONS",
    "SUBPROTOCOLS",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "Ack",
    "Change",
    "Changes",
    "ClientMessage",
    "CloseCode",
    "Codec",
    "DecodeError",
    "ErrorCode",
    "ErrorMsg",
    "EventMsg",
    "Goaway",
    "Hello",
    "InvalidMutation",
    "JsonCodec",
    "MsgpackCodec",
    "Mutate",
    "Mutated",
    "Mutation",
    "MutationResult",
    "Ping",
    "Pong",
    "Priority",
    "ProtocolError",
    "Pull",
    "ServerMessage",
    "Subscribe",
    "Subscribed",
    "UnknownMsg",
    "Unsubscribe",
    "Unsubscribed",
    "Welcome",
    "codec_for",
    "is_channel",
    "parse_channel",
    "parse_client_message",
    "parse_mutate",
    "parse_mutation",
    "parse_server_message",
    "should_reconnect",
]


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
    missing = [name for name in OLD_NAMES if not hasattr(protocol, name)]
    assert missing == []
    assert set(OLD_NAMES) <= set(protocol.__all__)


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(protocol) if not name.startswith("_")}
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert set(protocol.__all__) == public - modules

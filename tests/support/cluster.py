"""``fieldpush serve`` nodes on one redis-server, for the end-to-end tests.

The nodes run with the built-in development secret on loopback, so tokens
minted with the default settings are accepted.
"""

from __future__ import annotations

from fieldpush.identity.auth import mint_token
from fieldpush.settings import Settings
from tests.support.cli import ServeProcess

SETTINGS = Settings()


def token(user: str, role: str = "sales", teams: tuple[str, ...] = ()) -> str:
    """A token the nodes accept, valid for an hour (some are made at import time,
    long before their test runs on a busy machine)."""
    return mint_token(SETTINGS, user=user, role=role, teams=teams, ttl_s=3600)


DISPATCHER = {"Authorization": f"Bearer {token('disp', 'dispatcher')}"}


def start_node(redis_url: str, name: str, **settings: str) -> ServeProcess:
    """A node on ``redis_url``; ``settings`` become ``FIELDPUSH_<NAME>`` variables."""
    env = {"FIELDPUSH_REDIS_TIMEOUT_S": "0.5", "FIELDPUSH_ACCESS_LOG": "false"}
    env.update({f"FIELDPUSH_{key.upper()}": value for key, value in settings.items()})
    return ServeProcess("--port", "0", "--redis-url", redis_url, "--node-id", name, env=env).start()

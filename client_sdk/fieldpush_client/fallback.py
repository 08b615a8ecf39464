"""What the long-poll fallback needs to know without a socket: where the HTTP
API is, and whose ``user:<id>`` channel to poll."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit, urlunsplit

__all__ = ["http_url_for", "token_subject"]

_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def http_url_for(ws_url: str) -> str:
    """The HTTP API base of a node's WebSocket URL:
    ``wss://push.example.com/v1/ws`` → ``https://push.example.com``."""
    parts = urlsplit(ws_url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"not a ws:// or wss:// URL: {ws_url!r}")
    path = parts.path.removesuffix("/").removesuffix("/v1/ws")
    return urlunsplit((_SCHEMES[parts.scheme], parts.netloc, path, "", ""))


def token_subject(token: str) -> str | None:
    """The ``sub`` claim of a JWT, read without verifying it (the server
    verifies); ``None`` if the token is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None

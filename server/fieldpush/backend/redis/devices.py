"""The device registry on Redis, shared by every node: see
:class:`~fieldpush.backend.base.Devices`.

``<p>:dev:<user>`` is a hash: device id -> JSON ``{first_seen, last_seen,
node, app, state}`` (ms since the epoch). ``open.lua`` writes it, in the
hello's one step; entries stay until a newer device evicts the least
recently seen ``active`` one beyond ``max_devices_per_user``.
"""

from __future__ import annotations

import json

from fieldpush.backend.base import Device, DeviceState
from fieldpush.backend.redis.client import RedisClient

__all__ = ["RedisDevices", "device_of"]


def device_of(user: str, device: str, raw: bytes | str) -> Device:
    """A registry entry (JSON) as a :class:`Device`."""
    fields = json.loads(raw)
    return Device(
        user=user,
        device=device,
        first_seen=int(fields["first_seen"]),
        last_seen=int(fields["last_seen"]),
        node=str(fields["node"]),
        app=str(fields.get("app") or ""),
        state=DeviceState(fields.get("state", "active")),
    )


class RedisDevices:
    """See the module docstring."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def of_user(self, user: str) -> list[Device]:
        raw = await self._client.execute(b"HGETALL", f"{self._prefix}:dev:{user}")
        devices = [
            device_of(user, name.decode(), value)
            for name, value in zip(raw[::2], raw[1::2], strict=True)
        ]
        return sorted(devices, key=lambda d: (d.first_seen, d.device))

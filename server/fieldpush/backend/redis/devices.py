"""The device registry on Redis, shared by every node: see
:class:`~fieldpush.backend.base.Devices`.

``<p>:dev:<user>`` is a hash: device id -> JSON ``{first_seen, last_seen,
node, app, state, wipe_id?, skew_ms?, drift?}`` (ms since the epoch; ``drift``:
``{type: [records, at]}``). ``open.lua``
writes it, in the hello's one step, and refuses a ``wiped`` device;
``device.lua`` marks a wipe (announced on the access channel, ``w {user,
device, id}``), confirms it, and sets the clock offset and the last drift
per record type of a registered device; entries stay until a newer device
evicts the least recently seen ``active`` one beyond ``max_devices_per_user``.
"""

from __future__ import annotations

import json

from fieldpush.backend.base import Device, DeviceState
from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.ledger import script

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
        wipe_id=fields.get("wipe_id"),
        skew_ms=None if fields.get("skew_ms") is None else int(fields["skew_ms"]),
        drift={
            str(name): (int(pair[0]), int(pair[1]))
            for name, pair in (fields.get("drift") or {}).items()
        },
    )


_DEVICE = script("device.lua")


class RedisDevices:
    """See the module docstring. A wipe is announced on ``access_channel``."""

    def __init__(self, client: RedisClient, prefix: str, access_channel: bytes) -> None:
        self._client = client
        self._prefix = prefix
        self._access_channel = access_channel

    async def mark_wipe(self, user: str, device: str, wipe_id: str) -> Device | None:
        announcement = "w " + json.dumps({"user": user, "device": device, "id": wipe_id})
        return await self._change(user, device, "mark", wipe_id, announcement)

    async def confirm_wipe(self, user: str, device: str, wipe_id: str) -> Device | None:
        return await self._change(user, device, "confirm", wipe_id, "")

    async def note_skew(self, user: str, device: str, skew_ms: int) -> None:
        await self._change(user, device, "skew", str(skew_ms), "")

    async def note_drift(self, user: str, device: str, records: dict[str, int], at: int) -> None:
        drift = json.dumps({name: [n, at] for name, n in records.items()})
        await self._change(user, device, "drift", drift, "")

    async def _change(
        self, user: str, device: str, mode: str, wipe_id: str, announcement: str
    ) -> Device | None:
        key = f"{self._prefix}:dev:{user}"
        args = [key, device, mode, wipe_id, self._access_channel, announcement]
        raw = await self._client.run(_DEVICE, [], args)
        return None if raw is None else device_of(user, device, raw)

    async def of_user(self, user: str) -> list[Device]:
        raw = await self._client.execute(b"HGETALL", f"{self._prefix}:dev:{user}")
        devices = [
            device_of(user, name.decode(), value)
            for name, value in zip(raw[::2], raw[1::2], strict=True)
        ]
        return sorted(devices, key=lambda d: (d.first_seen, d.device))

"""The device registry in this process's memory (one node): see
:class:`~fieldpush.backend.base.Devices`."""

from __future__ import annotations

import dataclasses

from fieldpush.backend.base import Device, DeviceState

__all__ = ["MemoryDevices"]


class MemoryDevices:
    """See the module docstring."""

    def __init__(self) -> None:
        self._devices: dict[str, dict[str, Device]] = {}

    async def of_user(self, user: str) -> list[Device]:
        return sorted(self._devices.get(user, {}).values(), key=lambda d: (d.first_seen, d.device))

    def seen(
        self, user: str, device: str, *, node: str, app: str, at: int, max_devices: int
    ) -> Device:
        """A hello from ``device``: registered, or its ``last_seen``, ``node`` and
        ``app`` updated (see ``SessionOpening.max_devices`` for the limit)."""
        devices = self._devices.setdefault(user, {})
        known = devices.get(device)
        if known is not None:
            seen = dataclasses.replace(known, last_seen=at, node=node, app=app)
        else:
            if max_devices and len(devices) >= max_devices:
                active = [d for d in devices.values() if d.state is DeviceState.ACTIVE]
                if active:
                    del devices[min(active, key=lambda d: d.last_seen).device]
            seen = Device(user, device, first_seen=at, last_seen=at, node=node, app=app)
        devices[device] = seen
        return seen

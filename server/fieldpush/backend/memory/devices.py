"""The device registry in this process's memory (one node): see
:class:`~fieldpush.backend.base.Devices`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fieldpush.backend.base import Device, DeviceState

__all__ = ["MemoryDevices"]


class MemoryDevices:
    """See the module docstring. ``announce`` tells the node of a wipe."""

    def __init__(self, announce: Callable[[str, str, str], None]) -> None:
        self._devices: dict[str, dict[str, Device]] = {}
        self._announce = announce

    async def mark_wipe(self, user: str, device: str, wipe_id: str) -> Device | None:
        known = self._devices.get(user, {}).get(device)
        if known is None or known.state is DeviceState.WIPED:
            return known
        marked = dataclasses.replace(known, state=DeviceState.WIPE_PENDING, wipe_id=wipe_id)
        self._devices[user][device] = marked
        self._announce(user, device, wipe_id)
        return marked

    async def confirm_wipe(self, user: str, device: str, wipe_id: str) -> Device | None:
        known = self._devices.get(user, {}).get(device)
        if known is None or known.state is not DeviceState.WIPE_PENDING:
            return known
        if known.wipe_id != wipe_id:
            return known
        wiped = dataclasses.replace(known, state=DeviceState.WIPED)
        self._devices[user][device] = wiped
        return wiped

    async def note_skew(self, user: str, device: str, skew_ms: int) -> None:
        known = self._devices.get(user, {}).get(device)
        if known is not None:
            self._devices[user][device] = dataclasses.replace(known, skew_ms=skew_ms)

    async def note_drift(self, user: str, device: str, records: dict[str, int], at: int) -> None:
        known = self._devices.get(user, {}).get(device)
        if known is not None:
            drift = {**known.drift, **{name: (n, at) for name, n in records.items()}}
            self._devices[user][device] = dataclasses.replace(known, drift=drift)

    def wiped(self, user: str, device: str) -> Device | None:
        """The device, if it is ``wiped`` (its hellos are refused)."""
        known = self._devices.get(user, {}).get(device)
        return known if known is not None and known.state is DeviceState.WIPED else None

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

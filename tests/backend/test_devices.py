"""The device registry's wipe states (fieldpush.backend.base.Devices), on
each backend through the ``backend`` fixture: marked, announced, confirmed
only with the wipe's id, and a wiped device's hello refused with nothing
written."""

from __future__ import annotations

import time

import pytest

from fieldpush.backend.base import Backend, DeviceState, PresenceEntry, SessionOpening
from tests.support.backends import NODE, Sink
from tests.support.timing import eventually


def hello(user: str, session: str, device: str) -> SessionOpening:
    now = time.time_ns() // 1_000_000
    return SessionOpening(
        entry=PresenceEntry(user, session, device, NODE, now, now),
        channels=[f"user:{user}"],
        audience=[],
        reads=[],
        cap=0,
        refuse_over_cap=False,
    )


@pytest.fixture
async def store(backend: tuple[Backend, Sink]) -> tuple[Backend, Sink]:
    await backend[0].presence.beat(NODE, 60_000)
    return backend


async def test_a_wipe_is_marked_announced_and_confirmed_by_its_id(
    store: tuple[Backend, Sink],
) -> None:
    backend, sink = store
    devices = backend.devices
    assert await devices.mark_wipe("ann", "lost-phone", "w-1") is None  # never seen
    await backend.open_session(hello("ann", "s1", "lost-phone"))
    marked = await devices.mark_wipe("ann", "lost-phone", "w-1")
    assert marked is not None
    assert (marked.state, marked.wipe_id) == (DeviceState.WIPE_PENDING, "w-1")
    await eventually(lambda: sink.wipes == [("ann", "lost-phone", "w-1")], message="announced")
    unconfirmed = await devices.confirm_wipe("ann", "lost-phone", "w-other")
    assert unconfirmed is not None and unconfirmed.state is DeviceState.WIPE_PENDING
    wiped = await devices.confirm_wipe("ann", "lost-phone", "w-1")
    assert wiped is not None and wiped.state is DeviceState.WIPED
    again = await devices.mark_wipe("ann", "lost-phone", "w-2")  # wiped stays wiped
    assert again is not None and (again.state, again.wipe_id) == (DeviceState.WIPED, "w-1")
    assert [d.state for d in await devices.of_user("ann")] == [DeviceState.WIPED]
    assert len(sink.wipes) == 1


async def test_a_wiped_devices_hello_is_refused_and_writes_nothing(
    store: tuple[Backend, Sink],
) -> None:
    backend, _ = store
    await backend.open_session(hello("ann", "s1", "lost-phone"))
    await backend.presence.leave(hello("ann", "s1", "lost-phone").entry, ["user:ann"])
    await backend.devices.mark_wipe("ann", "lost-phone", "w-1")
    await backend.devices.confirm_wipe("ann", "lost-phone", "w-1")
    before = await backend.devices.of_user("ann")
    refused = await backend.open_session(hello("ann", "s2", "lost-phone"))
    assert not refused.admitted
    assert refused.device is not None and refused.device.state is DeviceState.WIPED
    assert await backend.presence.sessions_of("ann") == []
    assert await backend.devices.of_user("ann") == before  # last_seen not moved
    other = await backend.open_session(hello("ann", "s3", "new-phone"))
    assert other.admitted and other.device is not None
    assert other.device.state is DeviceState.ACTIVE


async def test_a_devices_skew_is_kept_with_its_other_fields(store: tuple[Backend, Sink]) -> None:
    backend, _ = store
    devices = backend.devices
    await devices.note_skew("ann", "never-seen", 5_000)
    assert await devices.of_user("ann") == []  # no entry made
    await backend.open_session(hello("ann", "s1", "phone"))
    for skew in (59_990, -3_600_000, 10**12, -(10**12), 0):
        await devices.note_skew("ann", "phone", skew)
        (device,) = await devices.of_user("ann")
        assert device.skew_ms == skew  # exact, at the bounds too
    await devices.note_skew("ann", "phone", 1_234)
    await backend.open_session(hello("ann", "s2", "phone"))  # a later hello keeps it
    marked = await devices.mark_wipe("ann", "phone", "w-1")
    assert marked is not None and marked.skew_ms == 1_234
    (device,) = await devices.of_user("ann")
    assert (device.skew_ms, device.state) == (1_234, DeviceState.WIPE_PENDING)


async def test_a_devices_drift_is_kept_per_type_with_its_other_fields(
    store: tuple[Backend, Sink],
) -> None:
    backend, _ = store
    devices = backend.devices
    await devices.note_drift("ann", "never-seen", {"customer": 3}, 1_000)
    assert await devices.of_user("ann") == []  # no entry made
    await backend.open_session(hello("ann", "s1", "phone"))
    await devices.note_skew("ann", "phone", 1_234)
    await devices.note_drift("ann", "phone", {"customer": 3, "device": 1}, 1_764_000_000_000)
    await devices.note_drift("ann", "phone", {"device": 7}, 1_764_000_000_500)
    await backend.open_session(hello("ann", "s2", "phone"))  # a later hello keeps it
    (device,) = await devices.of_user("ann")
    assert device.drift == {"customer": (3, 1_764_000_000_000), "device": (7, 1_764_000_000_500)}
    assert device.skew_ms == 1_234
    assert device.as_dict()["drift"] == {
        "customer": {"records": 3, "at": 1_764_000_000_000},
        "device": {"records": 7, "at": 1_764_000_000_500},
    }

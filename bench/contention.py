"""The contention scenario of ``python -m bench.sync --measure contention`` (issue 13, item 9).

Sales phones, after-sales engineers, a dispatcher and the CRM edit the same
records at once, as in the field ("sales and after-sales update the same
customer"):

- one customer per sales phone (``--sales``) whose
  ``stage``, ``phone`` and ``budget`` both the owning sales phone and the CRM
  edit;
- ``--devices`` devices (few, so that engineers collide) whose
  ``last_service`` every engineer and the CRM edit;
- one work order per engineer, whose ``status`` its engineer and the
  dispatcher edit, and whose ``urgency`` the dispatcher sets ``urgent``
  (a critical push to the engineer, who acks it) and back.

Every actor sends one ``mutate`` every ``--interval`` seconds (jittered) for
``--duration`` seconds; an edit is stamped with the actor's clock, a tenth of
them ``--offline`` seconds in the past, like an edit queued offline, so that
newer edits on the same field win and older ones come back ``conflict``.
Meanwhile every phone pulls its changes every ``--pull-every`` seconds and
applies them to a local replica (as the SDK does); a pull or mutate answered
``unavailable`` (the node shedding load) is counted and tried again later.

Reported: mutations sent and their results (``applied``, ``conflict``, any
other is an error that fails the run), the conflict rate, the mutate round
trip p50/p99, the critical push latency (dispatcher's ``mutate`` sent to the
engineer's receipt of the ``record.changed`` event) p50/p99 [target p99 ≤ 2 s
under this load], and **convergence**: after the storm every phone pulls to
the end and its replica must equal a fresh full download of the same user
(every record, every readable field), else the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.procstat import cpu_seconds
from bench.scenarios import percentile
from bench.seeding import TEAM, load, token
from bench.servers import Server

#: A local replica: (type, rid) -> fields.
Replica = dict[tuple[str, str], dict[str, Any]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Tally:
    """What the storm measured, across actors."""

    results: dict[str, int] = field(default_factory=dict)
    rtts_ns: list[int] = field(default_factory=list)
    push_ns: list[int] = field(default_factory=list)
    urgent_sent: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    unavailable: int = 0


class Unavailable(Exception):
    """The node answered ``unavailable``: try again later."""


class Actor:
    """One socket of one user: mutate, pull into a replica, ack critical events."""

    def __init__(self, ws: ClientConnection, user: str, tally: Tally) -> None:
        self.ws, self.user, self.tally = ws, user, tally
        self.replica: Replica = {}
        self.cursor: str | None = None
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._sending: set[asyncio.Future[None]] = set()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, user: str, role: str, tally: Tally) -> Actor:
        ws = await connect(url, subprotocols=["fieldpush.v1.json"], compression=None, max_size=None)  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "hello", "token": token(user, role), "device": user}))
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise SystemExit(f"bench.sync contention: no welcome for {user}: {welcome}")
        return cls(ws, user, tally)

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind in ("event", "events"):
                self._events(message.get("events", [message]))
            elif "id" in message and message["id"] in self._waiting:
                self._waiting.pop(message["id"]).set_result(message)

    def _events(self, events: list[dict[str, Any]]) -> None:
        acks = []
        for event in events:
            if event.get("priority") == "critical":
                acks.append(event["id"])
                data = event.get("data") or {}
                sent = self.tally.urgent_sent.pop(str(data.get("rid")), None)
                if sent is not None and (data.get("fields") or {}).get("urgency") == "urgent":
                    self.tally.push_ns.append(time.perf_counter_ns() - sent)
        if acks:
            sending = asyncio.ensure_future(self.ws.send(json.dumps({"type": "ack", "ids": acks})))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        message["id"] = self._next_id
        future = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        await self.ws.send(json.dumps(message))
        return await asyncio.wait_for(future, 60)

    async def mutate(self, mutations: list[dict[str, Any]]) -> None:
        sent = time.perf_counter_ns()
        reply = await self.request({"type": "mutate", "mutations": mutations})
        self.tally.rtts_ns.append(time.perf_counter_ns() - sent)
        if reply.get("code") == "unavailable":
            self.tally.unavailable += 1
            return
        if reply.get("type") != "mutated":
            self.tally.errors.append(f"{self.user}: {reply}")
            return
        for result in reply["results"]:
            status = result["status"]
            self.tally.results[status] = self.tally.results.get(status, 0) + 1
            if status not in ("applied", "conflict"):
                self.tally.errors.append(f"{self.user}: {result}")

    async def pull(self, cursor: str | None) -> tuple[Replica, str]:
        """Every change after ``cursor`` (None: a full download), applied to a copy."""
        replica: Replica = {} if cursor is None else {k: dict(v) for k, v in self.replica.items()}
        while True:
            message: dict[str, Any] = {"type": "pull", "limit": 1000}
            if cursor is not None:
                message["cursor"] = cursor
            page = await self.request(message)
            if page.get("code") == "unavailable":
                self.tally.unavailable += 1
                raise Unavailable
            if page.get("type") != "changes":
                raise SystemExit(f"bench.sync contention: pull failed for {self.user}: {page}")
            for change in page["changes"]:
                key = (change["type"], change["rid"])
                if change.get("removed"):
                    replica.pop(key, None)
                else:
                    replica[key] = {**replica.get(key, {}), **change["fields"]}
            cursor = page["cursor"]
            if not page["more"]:
                assert cursor is not None
                return replica, cursor

    async def catch_up(self) -> None:
        """Pull to the end; after ``unavailable``, the next call tries again."""
        with contextlib.suppress(Unavailable):
            self.replica, self.cursor = await self.pull(self.cursor)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def stamp(rng: random.Random, offline_s: float, counter: int) -> list[int]:
    """Now, or (one edit in ten) ``offline_s`` ago: an edit queued offline."""
    back = int(offline_s * 1000) if rng.random() < 0.1 else 0
    return [now_ms() - back, counter]


async def seed(http: httpx.AsyncClient, url: str, args: argparse.Namespace) -> None:
    records: list[dict[str, Any]] = []
    for i in range(args.sales):
        fields = {"name": f"Customer {i}", "owner": f"s{i}", "team": TEAM, "stage": "lead"}
        records.append({"type": "customer", "rid": f"c{i}", "fields": fields})
    for i in range(args.devices):
        fields = {"serial": f"{10_000_000 + i}", "owner": f"s{i % args.sales}", "team": TEAM}
        records.append({"type": "device", "rid": f"d{i}", "fields": fields})
    for i in range(args.engineers):
        fields = {"device": f"d{i % args.devices}", "assignee": f"e{i}", "team": TEAM}
        records.append(
            {"type": "work_order", "rid": f"w{i}", "fields": fields | {"status": "open"}}
        )
    await load(http, url, records)


async def every(
    interval_s: float, until: float, rng: random.Random, act: Callable[[int], Awaitable[None]]
) -> None:
    """Call ``act(n)`` every ``interval_s`` (±50 %, the first at a random
    offset) until the perf_counter time ``until``."""

    async def pause(seconds: float) -> None:
        await asyncio.sleep(min(seconds, max(0.0, until - time.perf_counter())))

    await pause(rng.random() * interval_s)
    n = 0
    while time.perf_counter() < until:
        await act(n)
        n += 1
        await pause(interval_s * rng.uniform(0.5, 1.5))


async def contention(args: argparse.Namespace, server: Server, http_url: str) -> dict[str, Any]:
    ws_url = http_url.replace("http://", "ws://") + "/v1/ws"
    tally = Tally()
    rng = random.Random(args.seed)
    async with httpx.AsyncClient(timeout=120) as http:
        await seed(http, http_url, args)
        roles = [(f"s{i}", "sales") for i in range(args.sales)]
        roles += [(f"e{i}", "after_sales") for i in range(args.engineers)]
        roles += [("disp", "dispatcher"), ("crm", "service")]
        actors: dict[str, Actor] = {}
        for start in range(0, len(roles), 50):
            opened = await asyncio.gather(
                *(Actor.open(ws_url, user, role, tally) for user, role in roles[start : start + 50])
            )
            actors.update({actor.user: actor for actor in opened})
        phones = [actors[user] for user, role in roles if role != "service"]
        await asyncio.gather(*(actor.catch_up() for actor in phones))
        mids = iter(range(10**9))

        def mutation(record_type: str, rid: str, fields: dict[str, Any]) -> dict[str, Any]:
            n = next(mids)
            return {"mid": f"x{n}", "type": record_type, "rid": rid, "fields": fields,
                    "hlc": stamp(rng, args.offline, n % 1000)}  # fmt: skip

        def sales(i: int) -> Callable[[int], Awaitable[None]]:
            async def act(n: int) -> None:
                choice = rng.choice(
                    [{"stage": rng.choice(["lead", "negotiation", "signed"])},
                     {"phone": f"+49 30 {rng.randrange(10**6):06d}"},
                     {"budget": rng.randrange(10**6)}]
                )  # fmt: skip
                await actors[f"s{i}"].mutate([mutation("customer", f"c{i}", choice)])

            return act

        def engineer(i: int) -> Callable[[int], Awaitable[None]]:
            async def act(n: int) -> None:
                day = f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
                await actors[f"e{i}"].mutate(
                    [
                        mutation(
                            "device", f"d{rng.randrange(args.devices)}", {"last_service": day}
                        ),
                        mutation(
                            "work_order", f"w{i}", {"status": rng.choice(["accepted", "done"])}
                        ),
                    ]
                )

            return act

        urgent_now: set[str] = set()

        async def dispatcher(n: int) -> None:
            rid = f"w{rng.randrange(args.engineers)}"
            if rid in tally.urgent_sent:  # its last urgent push not received yet
                return
            urgent = rid not in urgent_now
            (urgent_now.add if urgent else urgent_now.discard)(rid)
            edit = mutation("work_order", rid, {"urgency": "urgent" if urgent else "normal"})
            edit["hlc"] = [now_ms(), 0]  # the dispatcher's edits are current
            if urgent:
                tally.urgent_sent[rid] = time.perf_counter_ns()
            await actors["disp"].mutate([edit])

        async def crm(n: int) -> None:
            i = rng.randrange(args.sales)
            await actors["crm"].mutate(
                [
                    mutation("customer", f"c{i}", {"phone": f"+49 40 {rng.randrange(10**6):06d}"}),
                    mutation(
                        "device", f"d{rng.randrange(args.devices)}", {"last_service": "2026-12-01"}
                    ),
                ]
            )

        def puller(actor: Actor) -> Callable[[int], Awaitable[None]]:
            async def act(n: int) -> None:
                await actor.catch_up()

            return act

        cpu_before = cpu_seconds(server.pid)
        began = time.perf_counter()
        until = began + args.duration
        tasks = [every(args.interval, until, rng, sales(i)) for i in range(args.sales)]
        tasks += [every(args.interval, until, rng, engineer(i)) for i in range(args.engineers)]
        tasks += [every(args.interval / 10, until, rng, dispatcher)]
        tasks += [every(args.interval / 10, until, rng, crm)]
        tasks += [every(args.pull_every, until, rng, puller(actor)) for actor in phones]
        await asyncio.gather(*tasks)
        span = time.perf_counter() - began
        cpu = cpu_seconds(server.pid) - cpu_before
        diverged = []
        for actor in phones:
            await actor.catch_up()
            fresh, _ = await actor.pull(None)  # every writer has stopped: nothing moves
            if fresh != actor.replica:
                diverged.append(actor.user)
        for actor in actors.values():
            await actor.close()
    if tally.errors:
        raise SystemExit(f"bench.sync contention: {len(tally.errors)} errors: {tally.errors[:3]}")
    if diverged:
        raise SystemExit(f"bench.sync contention: replicas diverged: {diverged[:10]}")
    total = sum(tally.results.values())
    rtts, pushes = sorted(tally.rtts_ns), sorted(tally.push_ns)
    return {
        "actors": len(actors),
        "duration_s": round(span, 1),
        "mutations": total,
        "results": tally.results,
        "unavailable": tally.unavailable,
        "conflict_rate": round(tally.results.get("conflict", 0) / total, 4) if total else None,
        "mutations_per_cpu_s": round(total / cpu) if cpu else None,
        "server_cpu_s": round(cpu, 2),
        "mutate_rtt_p50_ms": round(percentile(rtts, 0.5), 2),
        "mutate_rtt_p99_ms": round(percentile(rtts, 0.99), 2),
        "critical_pushes": len(pushes),
        "critical_push_p50_ms": round(percentile(pushes, 0.5), 2) if pushes else None,
        "critical_push_p99_ms": round(percentile(pushes, 0.99), 2) if pushes else None,
        "converged": f"{len(phones)} of {len(phones)} replicas equal a fresh download",
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's options, on ``python -m bench.sync``."""
    group = parser.add_argument_group("contention (--measure contention)")
    group.add_argument("--sales", type=int, default=200, help="sales phones (200)")
    group.add_argument("--engineers", type=int, default=50, help="after-sales engineers (50)")
    group.add_argument("--devices", type=int, default=20, help="devices they share (20)")
    group.add_argument("--duration", type=float, default=20, help="seconds of editing (20)")
    group.add_argument(
        "--interval", type=float, default=1.0, help="seconds between an actor's mutates (1)"
    )
    group.add_argument(
        "--offline", type=float, default=3.0, help="age of the one edit in ten queued offline (3 s)"
    )
    group.add_argument(
        "--pull-every", type=float, default=10, help="seconds between a phone's pulls (10)"
    )
    group.add_argument("--seed", type=int, default=1, help="random seed (1)")

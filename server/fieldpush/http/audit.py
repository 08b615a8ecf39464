"""``GET /v1/audit`` (docs/protocol.md section 2.10): the audit trail, for admins.

Query (all optional): ``target`` and ``actor`` (exact match), ``from`` and
``to`` (ms since the epoch, ``from <= ts <= to``), ``after`` (a seq: entries
after it; default 0, the start) and ``limit`` (1 to 1000, default 100).

The answer is ``{"entries": [...], "next": seq | null}``: the matching
entries in seq order, as stored (each verifiable, ``hash`` included). A
stored line that is not an entry (changed outside fieldpush) is answered in
its place, whatever the filters, as ``{"seq", "unreadable": <the line>,
"why"}``: evidence is never hidden, and ``fieldpush audit export`` writes
the line as stored so that ``audit verify`` names it. At
most :data:`SCAN_MAX` entries are scanned per request: ``next`` is the seq to
pass as ``after`` to go on (null: the end of the trail was reached), so a
filter that matches rarely answers pages with few or no entries rather than
one long request.

Admins only (403 for every other role). Each call, answered or refused, is
itself an audit entry (``audit.read``, the query in ``fields``). Query values
that are not what they should be (non-integers, negatives, beyond 2**53,
control characters, unknown names) are 422 naming the parameter.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fieldpush.audit.chain import Unreadable
from fieldpush.http.toolkit import caller, forbidden, invalid, query_of

__all__ = ["SCAN_MAX", "audit_routes"]

#: Entries scanned per request at most.
SCAN_MAX: Final = 10_000
_LIMIT_MAX: Final = 1000
_MAX_INT: Final = 2**53
_MAX_TEXT: Final = 300
_TEXT: Final = ("target", "actor")
_NUMBERS: Final = ("from", "to", "after", "limit")


def _query(request: Request) -> dict[str, Any]:
    """The query, checked (module docstring); 422 naming the parameter."""
    params = query_of(request, frozenset(_TEXT + _NUMBERS))
    query: dict[str, Any] = {}
    for name in _TEXT:
        value = params.get(name)
        if value is None or value == "":
            continue
        if len(value) > _MAX_TEXT or not value.isprintable():
            raise invalid(name, f"must be printable text of at most {_MAX_TEXT} characters")
        query[name] = value
    for name in _NUMBERS:
        value = params.get(name)
        if value is None or value == "":
            continue
        if not (value.isascii() and value.isdigit()) or len(value) > 16 or int(value) >= _MAX_INT:
            raise invalid(name, "must be a non-negative integer below 2**53")
        query[name] = int(value)
    limit = query.get("limit", 100)
    if not 1 <= limit <= _LIMIT_MAX:
        raise invalid("limit", f"must be 1 to {_LIMIT_MAX}")
    query["limit"] = limit
    return query


async def read_audit(request: Request) -> Response:
    node, identity = caller(request)
    if identity.role != "admin":
        node.audit.record(
            actor=identity.user, role=identity.role, action="audit.read", target="audit",
            outcome="refused:forbidden",
        )  # fmt: skip
        raise forbidden(f"role {identity.role!r} may not read the audit trail")
    query = _query(request)
    node.audit.require()
    after = query.get("after", 0)
    start, end = query.get("from", 0), query.get("to", _MAX_INT)
    target, actor = query.get("target"), query.get("actor")
    found: list[dict[str, Any]] = []
    scanned = after
    reached_end = False
    while len(found) < query["limit"] and scanned - after < SCAN_MAX:
        page = await node.backend.audit.read(scanned + 1, min(1000, SCAN_MAX - (scanned - after)))
        if not page:
            reached_end = True
            break
        for entry in page:
            scanned = entry.seq
            if isinstance(entry, Unreadable) or (
                start <= entry.ts <= end
                and (target is None or entry.target == target)
                and (actor is None or entry.actor == actor)
            ):
                found.append(entry.as_dict())
                if len(found) == query["limit"]:
                    break
    if not reached_end:  # stopped at the limit or SCAN_MAX: anything after?
        reached_end = scanned >= (await node.backend.audit.head()).size
    node.audit.record(
        actor=identity.user, role=identity.role, action="audit.read", target="audit",
        outcome="ok", fields={"query": (None, query), "answered": (None, len(found))},
    )  # fmt: skip
    return JSONResponse({"entries": found, "next": None if reached_end else scanned})


audit_routes = [Route("/v1/audit", read_audit, methods=["GET"])]

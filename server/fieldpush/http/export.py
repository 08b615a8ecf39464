"""``GET /v1/export/{type}`` (docs/protocol.md section 2.11): an admin's audited export.

Query (both optional): ``format`` — ``ndjson`` (default: one
``{"type", "rid", "fields"}`` per line, the shape ``fieldpush records
import`` reads) or ``csv`` (a header ``rid,<field>,...``, then one row per
record); ``side`` — ``phone`` (default: the names the phones use) or ``crm``
(the CRM's names and values, config/mappings.toml). Every live record of the
type is sent, in id order, streamed: the node holds one page of records at a
time, whatever the size of the export.

Guarantees:

- Admins only: every other role gets 403, and the refusal is an audit entry.
- One audit entry ``export`` (target: the type) per export, written when the
  stream ends, with ``rows`` and ``bytes`` sent and ``sha256``, the SHA-256
  of exactly those bytes: an auditor can match a file to its entry. The
  outcome is ``ok`` when the whole export was sent, ``aborted`` when the
  client went away, ``failed:unavailable`` when the backend failed midway
  (the response then ends without its final chunk, so the client sees an
  incomplete transfer, never a short file that looks whole). ``as_of`` is
  the change log's position when the export began.
- Nothing is exported unrecorded: when the audit trail cannot take entries,
  the export is refused with 503 before anything is sent.
- CSV cells that a spreadsheet would run as a formula (text starting with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) are prefixed with
  ``'``; lists and objects are compact JSON; a field never set is an empty
  cell. NDJSON carries every value exactly.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fieldpush.errors import BackendUnavailable
from fieldpush.http.toolkit import HTTPError, caller, forbidden, invalid, query_of
from fieldpush.sync.engine import actor_of
from fieldpush.sync.errors import SyncError
from fieldpush.sync.export import ExportPlan
from fieldpush.sync.mapping import Side
from fieldpush_client.protocol import ErrorCode

__all__ = ["ExportStream", "export_routes"]

log = logging.getLogger("fieldpush.api")

_FORMATS: Final = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
_SIDES: Final = {side.value: side for side in Side}
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")

#: One page of rows, encoded, and how many rows it holds.
Chunks = AsyncGenerator[tuple[bytes, int], None]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _csv_rows(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


async def _csv(plan: ExportPlan, pages: AsyncIterator[list[tuple[str, dict[str, Any]]]]) -> Chunks:
    yield _csv_rows([["rid", *plan.columns]]), 0
    async for page in pages:
        rows = [[_cell(rid), *(_cell(values.get(c)) for c in plan.columns)] for rid, values in page]
        yield _csv_rows(rows), len(page)


async def _ndjson(
    plan: ExportPlan, pages: AsyncIterator[list[tuple[str, dict[str, Any]]]]
) -> Chunks:
    name = plan.rtype.name
    async for page in pages:
        lines = [
            json.dumps({"type": name, "rid": rid, "fields": values}, ensure_ascii=False) + "\n"
            for rid, values in page
        ]
        yield "".join(lines).encode(), len(page)


_ENCODERS: Final = {"ndjson": _ndjson, "csv": _csv}


class ExportStream(Response):
    """A streamed export that reports what it sent: ``on_end(outcome, rows,
    bytes, sha256)`` is called exactly once, however the stream ends, with
    what the server accepted for sending (module docstring)."""

    def __init__(
        self,
        chunks: Chunks,
        media_type: str,
        filename: str,
        on_end: Callable[[str, int, int, str], None],
    ) -> None:
        self._chunks = chunks
        self._on_end = on_end
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({"Content-Disposition": f'attachment; filename="{filename}"'})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        digest = hashlib.sha256()
        rows = size = 0
        outcome = "aborted"
        # uvicorn drops what is sent after the client went away, without an
        # error: the disconnect comes through ``receive``, watched meanwhile.
        watcher = asyncio.ensure_future(_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk, count in self._chunks:
                if watcher.done():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                digest.update(chunk)
                rows, size = rows + count, size + len(chunk)
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                outcome = "ok"
        except OSError:  # a server that says so when the client went away
            pass
        except BackendUnavailable:
            outcome = "failed:unavailable"
            raise
        finally:
            watcher.cancel()
            await self._chunks.aclose()
            if outcome == "aborted":
                log.info("export of %d row(s) aborted: the client went away", rows)
            self._on_end(outcome, rows, size, digest.hexdigest())


async def _disconnect(receive: Receive) -> None:
    """Return once the client has gone away (``http.disconnect``)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def export(request: Request) -> Response:
    node, identity = caller(request)
    record_type = request.path_params["type"]
    target = record_type if record_type.isprintable() and len(record_type) <= 100 else "?"

    def audit(outcome: str, **fields: object) -> None:
        node.audit.record(
            actor=identity.user, role=identity.role, action="export", target=target,
            outcome=outcome, fields={name: (None, value) for name, value in fields.items()},
        )  # fmt: skip

    if identity.role != "admin":
        audit("refused:forbidden")
        raise forbidden(f"role {identity.role!r} may not export records")
    query = query_of(request, frozenset({"format", "side"}))
    format_name, side_name = query.get("format", "ndjson"), query.get("side", "phone")
    if format_name not in _FORMATS:
        raise invalid("format", f"must be one of {', '.join(_FORMATS)}")
    if side_name not in _SIDES:
        raise invalid("side", f"must be one of {', '.join(_SIDES)}")
    node.audit.require()
    actor = actor_of(identity, "http")
    try:
        plan = await node.sync.exporter.plan(actor, record_type, _SIDES[side_name])
    except SyncError as exc:
        audit(f"refused:{exc.code.value}")
        status = 404 if exc.code == ErrorCode.NOT_FOUND else 403
        raise HTTPError(status, exc.code, exc.message) from None

    def ended(outcome: str, rows: int, size: int, sha256: str) -> None:
        audit(
            outcome, format=format_name, side=side_name, rows=rows, bytes=size, sha256=sha256,
            as_of=plan.as_of,
        )  # fmt: skip

    chunks = _ENCODERS[format_name](plan, node.sync.exporter.rows(actor, plan))
    filename = f"{plan.rtype.name}.{format_name}"
    return ExportStream(chunks, _FORMATS[format_name], filename, ended)


export_routes = [Route("/v1/export/{type}", export, methods=["GET"])]

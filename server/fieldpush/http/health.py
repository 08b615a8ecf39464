"""Health, readiness and metrics: ``GET /healthz``, ``/readyz``, ``/metrics``.

No authentication (they are for load balancers and Prometheus). ``/healthz``
says the process serves; ``/readyz`` answers 503 while the backend cannot be
reached; ``/metrics`` is the Prometheus text format, here unless the
``metrics_port`` setting moves it to a listener of its own
(:mod:`fieldpush.http.metrics_listener`): then this one answers 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fieldpush.http.toolkit import HTTPError, node_of
from fieldpush.metrics import CONTENT_TYPE
from fieldpush_client.protocol import ErrorCode

__all__ = ["health_routes"]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "node": node_of(request).settings.node_id})


async def readyz(request: Request) -> Response:
    node = node_of(request)
    ready = await node.backend.ready()
    body = {"ready": ready, "backend": node.backend.name, "node": node.settings.node_id}
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    node = node_of(request)
    if node.settings.metrics_port is not None:
        raise HTTPError(404, ErrorCode.NOT_FOUND, "not found")
    return Response(node.metrics.render(), media_type=CONTENT_TYPE)


health_routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

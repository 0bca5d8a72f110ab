"""ASGI middleware guarding the API before any body is read: a cap on request size and on requests in flight.

Both checks must run before FastAPI parses a multipart body (which buffers it), so they live in middleware:
an oversized ``Content-Length`` is refused outright, a body that grows past the cap while streaming (chunked
uploads, lying headers) is cut off, and a request arriving while ``max_in_flight`` are being served gets 503
with ``Retry-After`` instead of queueing its upload in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Gate:
    """The limits and the live count of requests in flight (read by ``/healthz``)."""

    max_body_bytes: int
    max_in_flight: int
    in_flight: int = 0


class RequestLimits:
    """Applies to paths under ``prefix``; the web page and health checks are never throttled."""

    def __init__(self, app: ASGIApp, *, gate: Gate, prefix: str = "/v1/"):
        self.app = app
        self.gate = gate
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if gate.in_flight >= gate.max_in_flight:
            await _json(send, 503, f"server busy: {gate.in_flight} requests in flight, retry shortly",
                        [(b"retry-after", b"1")])
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > gate.max_body_bytes:
            await _json(send, 413, f"request body of {int(declared):,} bytes exceeds the limit of "
                                   f"{gate.max_body_bytes:,} bytes")
            return
        gate.in_flight += 1
        try:
            await self.app(scope, self._capped(receive), send)
        finally:
            gate.in_flight -= 1

    def _capped(self, receive: Receive) -> Receive:
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.gate.max_body_bytes:  # turned into a 413 JSON answer by the app's handler
                    raise HTTPException(413, f"request body exceeds the limit of {self.gate.max_body_bytes:,} bytes")
            return message

        return capped_receive


async def _json(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})

"""ASGI middleware guarding the API: large, slow or too many uploads cannot starve the other clients.

A request's body is received in full *before* it may take a processing slot, so a client trickling its upload
holds the bytes it sent and nothing else:
- a ``Content-Length`` over the cap is refused at once, and a body growing past it is cut off (413);
- the whole body must arrive within ``body_timeout_s`` (408), so no upload lasts for ever;
- the bodies being received together hold at most ``max_receiving_bytes`` (past it: 503 with ``Retry-After``);
- then at most ``max_in_flight`` requests are processed at once (more: 503 with ``Retry-After``), and a slot is
  given back as soon as the answer starts, so a client slow to read its answer holds none either;
- the images those requests hold decoded add up to at most ``max_decoded_pixels`` (``Gate.decoded``: a 56 KB
  PNG of one colour may decode to 48 MB), more: 503 with ``Retry-After``.
These run before FastAPI parses a body, so the middleware answers its refusals itself, as the app's JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A Host header: a name or IPv4 address, or a whole bracketed IPv6 address, then at most a port
HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^\[\]:]*)(?::[0-9]{1,5})?")
RETRY = (b"retry-after", b"1")
CLOSE = (b"connection", b"close")  # after a refused upload the rest of the body is not worth reading


@dataclass
class Gate:
    """The limits and the live counts (read by ``/healthz``)."""

    max_body_bytes: int
    max_in_flight: int
    max_receiving_bytes: int
    body_timeout_s: float
    max_decoded_pixels: int
    in_flight: int = 0  # requests being processed
    receiving: int = 0  # requests whose body is being received
    receiving_bytes: int = 0
    decoded_pixels: int = 0  # pixels of the images held decoded by the requests being processed

    @contextmanager
    def decoded(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the decoded-image budget while a request's images are in memory. A request that
        does not fit beside the others is refused (503); alone, any request that passed the upload limits fits."""
        if self.decoded_pixels and self.decoded_pixels + pixels > self.max_decoded_pixels:
            raise HTTPException(503, f"server busy: {self.decoded_pixels:,} pixels of images being processed, "
                                     "retry shortly", headers={"Retry-After": "1"})
        self.decoded_pixels += pixels
        try:
            yield
        finally:
            self.decoded_pixels -= pixels


class Refused(Exception):
    """An answer the middleware gives instead of the app."""

    def __init__(self, status: int, message: str, *headers: tuple[bytes, bytes]):
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


class ClientGone(Exception):
    """The client disconnected while sending its body: nobody is left to answer."""


class AllowedHosts:
    """Answers only requests whose ``Host`` header names this server (which stops DNS rebinding); others get the
    app's JSON 400. ``*`` allows any host, ``*.example.org`` any subdomain of example.org."""

    def __init__(self, app: ASGIApp, *, hosts: list[str]):
        self.app = app
        self.names = {host.lower() for host in hosts if not host.startswith("*")}
        self.suffixes = tuple(host[1:].lower() for host in hosts if host.startswith("*."))
        self.any = "*" in hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        parsed = HOST.fullmatch(host)  # anything else (``[::1]evil``, ``a:b:c``) names no host of ours
        name = parsed["name"].lower() if parsed else None
        if name is not None and (name in self.names or (self.suffixes and name.endswith(self.suffixes))):
            await self.app(scope, receive, send)
            return
        shown = "".join(ch if ch.isprintable() else "?" for ch in host)[:100]
        await _json(send, 400, f"host {shown!r} is not served here (serve.allowed_hosts)", [CLOSE])


class RequestLimits:
    """Applies to paths under ``prefix``; the web page, the docs and health checks are never throttled."""

    def __init__(self, app: ASGIApp, *, gate: Gate, prefix: str = "/v1/"):
        self.app = app
        self.gate = gate
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._receive_body(scope, receive)
            slot = self._take_slot()
        except Refused as refusal:
            await _json(send, refusal.status, str(refusal), refusal.headers)
            return
        except ClientGone:
            return

        async def send_releasing(message: Message) -> None:  # the work is done once the answer starts
            if message["type"] == "http.response.start":
                slot.release()
            await send(message)

        try:
            await self.app(scope, _replay(body, receive), send_releasing)
        finally:
            slot.release()

    async def _receive_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, within the size cap, the deadline and the shared budget of bodies being received."""
        gate = self.gate
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > gate.max_body_bytes:
            raise Refused(413, f"request body of {int(declared):,} bytes exceeds the limit of "
                               f"{gate.max_body_bytes:,} bytes", CLOSE)
        body = bytearray()
        gate.receiving += 1
        try:
            async with asyncio.timeout(gate.body_timeout_s):
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    if len(body) + len(chunk) > gate.max_body_bytes:
                        raise Refused(413, f"request body exceeds the limit of {gate.max_body_bytes:,} bytes", CLOSE)
                    if gate.receiving_bytes + len(chunk) > gate.max_receiving_bytes:
                        raise Refused(503, f"server busy: {gate.receiving} uploads being received, retry shortly",
                                      RETRY, CLOSE)
                    gate.receiving_bytes += len(chunk)
                    body += chunk
                    more = message.get("more_body", False)
        except TimeoutError:
            raise Refused(408, f"request body not received within {gate.body_timeout_s:g} s "
                               f"({len(body):,} bytes arrived)", CLOSE) from None
        finally:
            gate.receiving -= 1
            gate.receiving_bytes -= len(body)
        return bytes(body)

    def _take_slot(self) -> _Slot:
        gate = self.gate
        if gate.in_flight >= gate.max_in_flight:
            raise Refused(503, f"server busy: {gate.in_flight} requests in flight, retry shortly", RETRY)
        return _Slot(gate)


class _Slot:
    """One request's processing slot, given back once: when its answer starts, or when the app ends without one."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self.held = True
        gate.in_flight += 1

    def release(self) -> None:
        if self.held:
            self.held = False
            self.gate.in_flight -= 1


def _replay(body: bytes, receive: Receive) -> Receive:
    """The app reads the received body as one message, then waits on the client as usual (for a disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _json(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})

"""uvicorn's HTTP/1.1 protocol with the connection limits uvicorn lacks, so no client can starve the others.

uvicorn has no deadline for a request's headers, and its ``limit_concurrency`` counts every open connection, idle
ones included, then answers *every* request with a plain-text 503: 260 connections that never send a byte lock
everyone out. ``GuardedH11Protocol`` replaces that with three limits, enforced per connection before it holds
anything but a socket:
- a request's line and headers must arrive within ``header_timeout_s``, counted from the connection's start or the
  end of the previous answer (the body has its own deadline in ``limits.RequestLimits``): a client that sent part of
  a request gets a 408, an idle one is closed, as an idle keep-alive connection is;
- at most ``max_per_client`` open connections from one address, and ``max_connections`` in all: past either, the
  connection is answered at once with the app's JSON 503, ``Retry-After`` and which limit it met, then closed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# A refused connection reads and drops what its client still sends for this long before it closes: closing a socket
# with unread data resets it, and the client would see a reset instead of the 503 that says why.
LINGER_S = 2.0


@dataclass
class ConnectionLimits:
    """The limits and the connections admitted under them, per client address (one server shares one)."""

    max_connections: int
    max_per_client: int
    header_timeout_s: float
    open: Counter[str] = field(default_factory=Counter)
    total: int = 0

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address`` in, or say which limit refuses it."""
        if self.total >= self.max_connections:
            return f"server busy: {self.total} connections open (serve.max_connections), retry shortly"
        if self.open[address] >= self.max_per_client:
            return (f"too many open connections from {address}: {self.open[address]} (at most "
                    f"{self.max_per_client}, serve.max_connections_per_client); close some or retry shortly")
        self.open[address] += 1
        self.total += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self.open[address] -= 1
        if not self.open[address]:
            del self.open[address]


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, bound to one server's ``limits``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def answer(status: int, message: str, *, retry: bool = False) -> bytes:
    """A whole HTTP/1.1 response carrying the app's JSON error, ending the connection."""
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close", *(["retry-after: 1"] if retry else [])]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """One connection: admitted under ``limits`` or answered 503 at once, and held to the header deadline."""

    limits: ConnectionLimits  # set by ``guarded_protocol``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.address = self.client[0] if self.client else "unknown"
        self.deadline: asyncio.TimerHandle | None = None
        refusal = self.limits.admit(self.address)
        self.admitted = refusal is None
        if refusal is None:
            self._arm()
            return
        transport.write(answer(503, refusal, retry=True))
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(LINGER_S, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.admitted:
            self.admitted = False
            self.limits.release(self.address)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.admitted:  # a refused client's bytes are dropped until it reads its answer and closes
            super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the headers are in; the body has its own deadline
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # first: the call below may start a pipelined request, which disarms it
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.deadline = self.loop.call_later(self.limits.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _headers_late(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a request arrived: say why the connection ends
            self.transport.write(answer(408, f"request headers not received within {self.limits.header_timeout_s:g} s "
                                             "(serve.header_timeout_s)"))
        self.transport.close()

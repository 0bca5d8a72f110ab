"""No client can starve the others of connections (issue 23): a deadline for a request's headers, a cap on one
address's open connections and one on all, each refusal the app's JSON saying why, with ``Retry-After``.

A real uvicorn server (``serve.server.uvicorn_config``) runs in this process; raw sockets connect from two loopback
addresses: 127.0.0.1 (the innocent client) and 127.0.0.2 (the attacker).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import pytest
import uvicorn

from img2prompt.serve import ServeConfig, create_app
from img2prompt.serve.server import uvicorn_config
from serve_fakes import ColourModel

ATTACKER = "127.0.0.2"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


@contextmanager
def serving(**settings) -> Iterator[int]:
    """The app behind uvicorn with the guarded protocol, on a free port of 127.0.0.1; yields the port."""
    config = ServeConfig(port=0, **settings)
    basis = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    server = uvicorn.Server(uvicorn_config(create_app(ColourModel(basis), None, config), config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn offers no event for this
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse(response: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def healthz(port: int, source: str = "127.0.0.1") -> int:
    with connect(port, source) as sock:
        sock.sendall(HEALTHZ)
        return int(sock.recv(200).split()[1])


def test_one_address_past_its_cap_is_answered_503_saying_why_and_others_are_served():
    with serving(max_connections_per_client=3) as port, ExitStack() as held:
        idle = [held.enter_context(connect(port, ATTACKER)) for _ in range(3)]
        with connect(port, ATTACKER) as fourth:
            fourth.sendall(HEALTHZ)  # sent before the refusal is read: the answer must still arrive
            status, headers, body = parse(read_to_end(fourth))
        assert status == 503 and headers["retry-after"] == "1" and headers["content-type"] == "application/json"
        assert body == {"error": "too many open connections from 127.0.0.2: 3 (at most 3, "
                                 "serve.max_connections_per_client); close some or retry shortly"}
        assert healthz(port) == 200  # another address is served all along
        idle.pop().close()
        deadline = time.monotonic() + 10  # the server counts the closed connection out when it sees it go
        while healthz(port, ATTACKER) != 200:
            assert time.monotonic() < deadline


def test_past_the_cap_on_all_connections_a_new_one_is_answered_503():
    with serving(max_connections=4, max_connections_per_client=4) as port, ExitStack() as held:
        for _ in range(4):
            held.enter_context(connect(port, ATTACKER))
        with connect(port) as late:
            status, headers, body = parse(read_to_end(late))
        assert (status, headers["retry-after"]) == (503, "1")
        assert body == {"error": "server busy: 4 connections open (serve.max_connections), retry shortly"}


def test_headers_must_arrive_in_time_from_the_connection_or_the_last_answer():
    with serving(header_timeout_s=0.5) as port:
        started = time.monotonic()
        with connect(port, ATTACKER) as idle, connect(port, ATTACKER) as trickling, connect(port) as kept_alive:
            kept_alive.sendall(HEALTHZ)
            assert kept_alive.recv(200).startswith(b"HTTP/1.1 200")
            kept_alive.sendall(HEALTHZ[:20])  # the next request's headers have the deadline too (no keep-alive
            # timer runs once bytes arrive: without it this would wait for ever)
            sent = 0
            trickling.settimeout(0.1)
            while True:  # a byte every 0.1 s does not extend the deadline
                try:
                    late = trickling.recv(65536)
                    break
                except TimeoutError:
                    trickling.sendall(HEALTHZ[sent:sent + 1])
                    sent += 1
            trickling.settimeout(10)
            late += read_to_end(trickling)
            assert time.monotonic() - started >= 0.5 and sent < len(HEALTHZ)
            status, headers, body = parse(late)
            assert (status, headers["connection"]) == (408, "close")
            assert body == {"error": "request headers not received within 0.5 s (serve.header_timeout_s)"}
            assert read_to_end(idle) == b""  # nothing sent, nothing to answer: closed, as an idle keep-alive is
            assert parse(read_to_end(kept_alive))[0] == 408
        assert healthz(port) == 200


def test_connection_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match=r"max_connections_per_client \(300\) must be at most max_connections \(256\)"):
        ServeConfig(max_connections_per_client=300)
    with pytest.raises(ValueError, match="greater than 0"):
        ServeConfig(header_timeout_s=0)

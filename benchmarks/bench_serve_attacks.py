"""Hostile uploads, slow and idle clients against a real ``img2prompt serve`` (issues 14, 23), with innocent clients
watching.

The server is the one ``bench_serve.py`` measures (EfficientNet-Lite0, a 2,000-prompt bank, the shipped
``serve:`` defaults). During each attack two innocent clients upload the Kaggle sample images back to back
(``decode=false``: the embedding and the nearest bank prompts) and every answer is timed. Per attack: the cases
tried and how the server answered them, whether it crashed, the innocent requests that got no 200 ("lost"), their
p50/p99 latency and the server's peak resident memory. The attacks:
  none        nothing: the baseline
  aspect      1 x 16,000,000 and 20 x 800,000 PNGs (62 and 142 KB), 4 attackers back to back
  slow        32 connections (twice serve.max_in_flight), in place before the innocent clients arrive, announcing
              100 kB and sending 1 byte every 2 s for 40 s
  bombs       decompression-bomb headers, a 10 GB Content-Length, 11 MB bodies with and without a length
  fuzz        malformed uploads (the seeded generator of tests/test_serve_fuzz.py)
  host        valid uploads whose Host header names another site (DNS rebinding)
  idle        1,000 connections from one address (127.0.0.2) that never send a byte, in place before the
              innocent clients arrive, held until the server answers or closes each, at most 15 s (longer than
              serve.header_timeout_s, 10 s)
  headers     200 connections from 127.0.0.2 sending a request's headers one byte a second, likewise
All but ``slow``, ``idle`` and ``headers`` repeat their cases for 15 s. The innocent clients connect from 127.0.0.1.
``--src DIR`` runs the server from another checkout's ``src`` (e.g. the code before the fix) for comparison.

    flock /tmp/cpu.lock nice -n 5 .venv/bin/python benchmarks/bench_serve_attacks.py [--src DIR] [--screenshot]

The idle attack needs ~2,300 open files between this process and the server: the soft limit is raised to the hard
one, and the run stops when that is too low.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import resource
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench_serve import ROOT, Server, save_screenshots, workspace

sys.path.insert(0, str(ROOT / "tests"))
from serve_fakes import ELONGATED, elongated_png, image_bytes, png_header_only
from test_serve_fuzz import random_request  # the fuzz test's generator of malformed requests

SLOW_CLIENTS = 32
SLOW_SECONDS = 40  # longer than serve.body_timeout_s (30 s): the server should end them first
SECONDS = 15  # the other attacks repeat their cases for at least this long, so the innocent clients are timed
ATTACKER = "127.0.0.2"  # the idle and slow-header attacks come from one address; the innocent clients from 127.0.0.1
IDLE_CLIENTS = 1000
SLOW_HEADER_CLIENTS = 200
HELD_OPEN = -1  # a connection the server still held when the attack gave up


@dataclass
class Tally:
    """How the server answered an attack's cases (status code, or 0 for no answer at all)."""

    statuses: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1


def post(http: httpx.Client, tally: Tally, path: str = "/v1/predict", **kwargs) -> None:
    try:
        tally.add(http.post(path, **kwargs).status_code)
    except httpx.HTTPError:
        tally.add(0)


def no_attack(url: str, tally: Tally, ready: threading.Event) -> None:
    ready.set()
    time.sleep(SECONDS)


def aspect(url: str, tally: Tally, ready: threading.Event) -> None:
    files = [elongated_png(width, height) for width, height in ELONGATED]

    def attacker(seed: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            i = seed
            while time.monotonic() < until:
                post(http, tally, files={"file": ("long.png", files[i % 2], "image/png")})
                i += 1

    ready.set()
    until = time.monotonic() + SECONDS
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(attacker, range(4)))


def slow(url: str, tally: Tally, ready: threading.Event) -> None:
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n"
                     "Content-Type: multipart/form-data; boundary=x\r\n\r\n--x".encode())
        sock.setblocking(False)
        sockets.append(sock)
    time.sleep(1)
    ready.set()  # the slow clients are in place before anyone else arrives, as in the issue
    open_ = set(range(SLOW_CLIENTS))
    deadline = time.monotonic() + SLOW_SECONDS
    while open_ and time.monotonic() < deadline:
        for i in list(open_):
            try:
                answer = sockets[i].recv(200)
            except BlockingIOError:  # no answer yet: one more byte
                try:
                    sockets[i].send(b"-")
                except OSError:
                    tally.add(0)
                    open_.discard(i)
                continue
            except OSError:
                answer = b""
            tally.add(int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0)
            open_.discard(i)
        time.sleep(2)
    for _ in open_:  # still held open by the server when the attack gave up
        tally.add(HELD_OPEN)
    for sock in sockets:
        sock.close()


def idle(url: str, tally: Tally, ready: threading.Event) -> None:
    hold_connections(url, tally, ready, IDLE_CLIENTS, request=None)


def slow_headers(url: str, tally: Tally, ready: threading.Event) -> None:
    host = url.removeprefix("http://")
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {'x' * 40}\r\n\r\n".encode()
    hold_connections(url, tally, ready, SLOW_HEADER_CLIENTS, request=request)


def hold_connections(url: str, tally: Tally, ready: threading.Event, count: int, request: bytes | None) -> None:
    """``count`` connections from ``ATTACKER``, all in place before the innocent clients start, each sending nothing
    (``request`` None) or ``request`` one byte a second, for ``SECONDS``. Tallies the server's answer to each: its
    status, 0 when it closed the connection without one, ``HELD_OPEN`` when it still held it at the end."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5, source_address=(ATTACKER, 0))
        sock.setblocking(False)
        sockets.append(sock)
    time.sleep(1)
    ready.set()
    pending = dict(enumerate(sockets))
    sent = Counter()
    deadline = time.monotonic() + SECONDS
    while pending and time.monotonic() < deadline:
        for i, sock in list(pending.items()):
            try:
                answer = sock.recv(200)
            except BlockingIOError:  # no answer yet: the next byte, if any
                if request is not None and sent[i] < len(request):
                    try:
                        sent[i] += sock.send(request[sent[i]:sent[i] + 1])
                    except OSError:
                        tally.add(0)
                        del pending[i]
                continue
            except OSError:
                answer = b""
            tally.add(int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0)
            del pending[i]
        time.sleep(1)
    for _ in pending:
        tally.add(HELD_OPEN)
    for sock in sockets:
        sock.close()


def bombs(url: str, tally: Tally, ready: threading.Event) -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(11 * 2**20)

    def chunks():
        for start in range(0, len(big), 2**20):
            yield big[start:start + 2**20]

    ready.set()
    until = time.monotonic() + SECONDS
    with httpx.Client(base_url=url, timeout=120) as http:
        while time.monotonic() < until:
            post(http, tally, files={"file": ("bomb.png", png_header_only(60_000, 60_000), "image/png")})
            post(http, tally, files={"file": ("big.png", png_header_only(5_000, 5_000), "image/png")})
            post(http, tally, content=big, headers={"content-type": "application/json"})
            post(http, tally, content=chunks(), headers={"content-type": "application/json"})
            tally.add(declare_only(url, 10 * 2**30))


def declare_only(url: str, length: int) -> int:
    """Announce a ``length``-byte body and send none of it: the status the server answers (0: none)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n"
                     "Content-Type: application/json\r\n\r\n".encode())
        try:
            answer = sock.recv(200)
        except OSError:
            return 0
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def fuzz(url: str, tally: Tally, ready: threading.Event) -> None:
    rng = random.Random(1234)
    encoded = [image_bytes((200, 30, 60), fmt, size) for size in ((7, 5), (40, 31))
               for fmt in ("PNG", "JPEG", "WEBP", "GIF")]
    ready.set()
    until = time.monotonic() + SECONDS
    with httpx.Client(base_url=url, timeout=120) as http:
        while time.monotonic() < until:
            batch = rng.random() < 0.5
            post(http, tally, "/v1/predict/batch" if batch else "/v1/predict", **random_request(rng, encoded, batch))


def host(url: str, tally: Tally, ready: threading.Event) -> None:
    valid = image_bytes((10, 120, 200), size=(64, 64))  # a valid image: only the Host is wrong
    ready.set()
    until = time.monotonic() + SECONDS
    names = itertools.cycle(["evil.example", "attacker.example:8000", "192.168.1.20", "127.0.0.1.evil.example"])
    with httpx.Client(base_url=url, timeout=60) as http:
        while time.monotonic() < until:
            name = next(names)
            post(http, tally, files={"file": ("a.png", valid, "image/png")}, headers={"host": name})


# Each attack sets ``ready`` once its pressure is in place; the innocent clients start then.
ATTACKS: dict[str, Callable[[str, Tally, threading.Event], None]] = {
    "none": no_attack, "aspect": aspect, "slow": slow, "bombs": bombs, "fuzz": fuzz, "host": host, "idle": idle,
    "headers": slow_headers}


def innocent(url: str, images: list[tuple[str, bytes]], ready: threading.Event, stop: threading.Event,
             seen: list[tuple[int, float]]) -> None:
    """Once ``ready``, upload the sample images back to back until ``stop``; record (status, seconds) of each."""
    ready.wait()
    with httpx.Client(base_url=url, timeout=120) as http:
        i = 0
        while not stop.is_set():
            name, data = images[i % len(images)]
            started = time.perf_counter()
            try:
                status = http.post("/v1/predict?decode=false", files={"file": (name, data, "image/png")}).status_code
            except httpx.HTTPError:
                status = 0
            seen.append((status, time.perf_counter() - started))
            i += 1


def peak_rss_mb(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.wait(0.05):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except OSError:
            return


def run_attack(server: Server, url: str, name: str, images: list[tuple[str, bytes]]) -> dict:
    tally, seen, peak, ready, stop = Tally(), [], [0.0], threading.Event(), threading.Event()
    watchers = [threading.Thread(target=innocent, args=(url, images, ready, stop, seen)) for _ in range(2)]
    watchers.append(threading.Thread(target=peak_rss_mb, args=(server.process.pid, stop, peak)))
    for thread in watchers:
        thread.start()
    started = time.perf_counter()
    ATTACKS[name](url, tally, ready)
    seconds = time.perf_counter() - started
    stop.set()
    for thread in watchers:
        thread.join()
    latencies = sorted(took for _, took in seen)
    codes = tally.statuses
    return {"attack": name, "cases": sum(codes.values()) if name != "none" else 0, "seconds": seconds,
            "2xx": sum(n for c, n in codes.items() if 200 <= c < 300),
            "4xx": sum(n for c, n in codes.items() if 400 <= c < 500), "4xx_codes": sorted(c for c in codes if c >= 400
                                                                                          and c < 500),
            "5xx": sum(n for c, n in codes.items() if c >= 500), "5xx_codes": sorted(c for c in codes if c >= 500),
            "no_answer": codes[0], "held_open": codes[HELD_OPEN], "crashed": server.process.poll() is not None,
            "innocent": len(seen), "lost": sum(status != 200 for status, _ in seen),
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))] * 1000,
            "peak_rss_mb": peak[0]}


def table(rows: list[dict], label: str) -> None:
    print(f"\n{label}")
    print("| attack | seconds | cases tried | 2xx | 4xx (codes) | 5xx (codes) | closed without an answer | "
          "still held open | crashed | innocent requests | innocent lost | innocent p50 ms | innocent p99 ms | "
          "server peak RSS MB |")
    print("|---" * 14 + "|")
    for r in rows:
        codes4 = f" ({', '.join(map(str, r['4xx_codes']))})" if r["4xx_codes"] else ""
        codes5 = f" ({', '.join(map(str, r['5xx_codes']))})" if r["5xx_codes"] else ""
        print(f"| {r['attack']} | {r['seconds']:.0f} | {r['cases']} | {r['2xx']} | {r['4xx']}{codes4} | "
              f"{r['5xx']}{codes5} | {r['no_answer']} | {r['held_open']} | {'yes' if r['crashed'] else 'no'} | "
              f"{r['innocent']} | {r['lost']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['peak_rss_mb']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="Run the server from this checkout's src folder (e.g. before).")
    parser.add_argument("--bank-size", type=int, default=2000)
    parser.add_argument("--attacks", nargs="*", default=list(ATTACKS), choices=list(ATTACKS))
    parser.add_argument("--screenshot", action="store_true",
                        help="Also save benchmarks/serve_screenshot.png and benchmarks/serve_docs_screenshot.png.")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server, started below, inherits it
    if hard < 2 * (IDLE_CLIENTS + SLOW_HEADER_CLIENTS) and {"idle", "headers"} & set(args.attacks):
        raise SystemExit(f"ulimit -n is {hard}: the idle attack needs about {2 * IDLE_CLIENTS + 300} open files")
    with workspace(args.bank_size) as (work, checkpoint, bank, images):
        # A 2 s cap on a decode: fast mode ends within it, best is cut short (the page says so).
        config = {"decode": {"modifiers": ["mediums", "movements"], "budget_s": 2.0}}  # default cache folder
        env = {**os.environ, "PYTHONPATH": str(args.src.resolve())} if args.src else None
        server = Server(checkpoint, bank, config, work, "attacked", env=env)
        with server as url:
            rows = []
            for name in args.attacks:
                print(f"attack {name}...", file=sys.stderr, flush=True)
                rows.append(run_attack(server, url, name, images))
            if args.screenshot:
                save_screenshots(url)
    table(rows, f"# server from {args.src or 'this checkout'}: {os.cpu_count()} cores, load average "
                f"{os.getloadavg()[0]:.1f} at the end; bank {args.bank_size} prompts; serve: defaults")

if __name__ == "__main__":
    main()

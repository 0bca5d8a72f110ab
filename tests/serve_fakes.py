"""Test doubles for the serving tests: a deterministic colour -> prompt-embedding model and image bytes.

``ColourModel`` maps an image's mean colour to the mix ``r * e_red + g * e_green + b * e_blue`` of three
prompt embeddings, normalised; so a pure red image embeds exactly as the red prompt, and the nearest bank
prompt of each primary colour is known in advance.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from functools import lru_cache

import httpx
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

COLOUR_PROMPTS = {
    "red": "a ripe red apple on a wooden table, studio lighting",
    "green": "a green forest of tall pine trees, morning mist",
    "blue": "a calm blue ocean under a clear sky, wide angle",
}
PRIMARIES = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class ColourModel:
    """Implements the ImageEmbedder protocol; records every forward pass's batch size."""

    name = "colour-mix"
    sources = ("colours",)

    def __init__(self, basis: np.ndarray, *, hold: threading.Event | None = None, delay_s: float = 0.0):
        self.basis = np.asarray(basis, np.float32)  # (3, 384): the red, green and blue prompt embeddings
        self.hold = hold
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        if self.hold is not None:
            self.hold.wait(timeout=30)
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        self.batch_sizes.append(len(images))
        colours = np.stack([np.asarray(im.convert("RGB"), np.float32).reshape(-1, 3).mean(0) for im in images])
        vectors = (colours / 255.0) @ self.basis
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def image_bytes(colour: tuple[int, int, int], fmt: str = "PNG", size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring ``width x height`` with one tiny compressed row: a decompression bomb's signature."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


ELONGATED = [(16_000_000, 1), (800_000, 20)]  # the attacks: 62 and 142 KB files, 16 M pixels each


@lru_cache
def elongated_png(width: int, height: int) -> bytes:
    """A real, complete PNG of an extreme aspect ratio (it compresses to almost nothing)."""
    return image_bytes((90, 160, 30), size=(width, height))


LOCAL = "http://localhost"  # the server listens on loopback by default, so it answers only loopback Host headers


def local_client(app, **kwargs) -> TestClient:
    """A ``TestClient`` that talks to ``app`` as a browser on the same machine would."""
    return TestClient(app, base_url=LOCAL, **kwargs)


async def in_lifespan(app, run, *, raise_app_exceptions: bool = True):
    """``await run(http)`` inside ``app``'s lifespan, ``http`` an async client talking to it on loopback."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url=LOCAL,
                                                                   timeout=30) as http:
        return await run(http)

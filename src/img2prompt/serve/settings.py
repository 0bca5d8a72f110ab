"""The ``serve:`` config section: where to listen and the limits that keep one bad client from hurting others.

How hard a prompt is searched for per image is the ``decode:`` section's ``mode`` (its ``budget_s`` is a time cap).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from img2prompt.config import StrictModel

ImageFormat = Literal["png", "jpeg", "webp", "gif", "bmp"]
LOOPBACK = ("127.0.0.1", "localhost", "::1")  # addresses to listen on that only this machine reaches
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"]  # how a Host header names them


class ServeConfig(StrictModel):
    """Defaults suit one CPU box; every limit answers a 4xx (or 503 when busy) instead of running out of memory."""

    host: str = "127.0.0.1"
    device: str = "cpu"  # where the image model runs: cpu, cuda, cuda:1 ...
    port: int = Field(8000, ge=0, le=65535)
    # Host headers answered (others get 400, which stops DNS rebinding); None: the loopback names when listening
    # on a loopback address, else any ("*"): name your server's host names when it is exposed.
    allowed_hosts: list[str] | None = None
    max_upload_bytes: int = Field(10 * 2**20, gt=0)  # whole request body, single or batch
    body_timeout_s: float = Field(30.0, gt=0)  # a request body must arrive in full within this; else 408
    max_receiving_bytes: int = Field(64 * 2**20, gt=0)  # all bodies being received at once; more: 503
    max_pixels: int = Field(16_000_000, gt=0)  # per image, checked before decoding (decompression bombs)
    # all images held decoded by the requests being processed (3 bytes each: 768 MB); more: 503
    max_decoded_pixels: int = Field(256_000_000, gt=0)
    # a request's line and headers must arrive within this, from the connection's start or the previous answer's end;
    # else 408 (an idle connection is closed)
    header_timeout_s: float = Field(10.0, gt=0)
    max_connections: int = Field(256, ge=1)  # open connections in all; a new one past it is answered 503
    # open connections from one address; a new one past it is answered 503 (behind a proxy every client has the
    # proxy's address: raise it to max_connections and let the proxy limit clients)
    max_connections_per_client: int = Field(64, ge=1)
    allowed_formats: list[ImageFormat] = Field(default_factory=lambda: ["png", "jpeg", "webp"])
    max_images: int = Field(16, ge=1)  # per batch request
    max_in_flight: int = Field(16, ge=1)  # /v1 requests processed at once (bodies already received); more: 503
    batch_size: int = Field(16, ge=1)  # images per forward pass of the micro-batcher
    batch_wait_ms: float = Field(5.0, ge=0)  # how long the first request of a batch waits for company
    top_k: int = Field(5, ge=0)  # nearest bank prompts returned by default
    max_top_k: int = Field(50, ge=0)

    @model_validator(mode="after")
    def _one_upload_fits(self) -> ServeConfig:
        if self.max_receiving_bytes < self.max_upload_bytes:
            raise ValueError(f"max_receiving_bytes ({self.max_receiving_bytes:,}) must hold at least one upload "
                             f"of max_upload_bytes ({self.max_upload_bytes:,})")
        if self.max_decoded_pixels < self.max_pixels:
            raise ValueError(f"max_decoded_pixels ({self.max_decoded_pixels:,}) must hold at least one image of "
                             f"max_pixels ({self.max_pixels:,})")
        if self.max_connections_per_client > self.max_connections:
            raise ValueError(f"max_connections_per_client ({self.max_connections_per_client}) must be at most "
                             f"max_connections ({self.max_connections})")
        if self.top_k > self.max_top_k:
            raise ValueError(f"top_k ({self.top_k}) must be at most max_top_k ({self.max_top_k})")
        return self

    def hosts(self) -> list[str]:
        """The Host headers to answer: ``allowed_hosts``, or its default for ``host``."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        return LOOPBACK_NAMES if self.host in LOOPBACK else ["*"]

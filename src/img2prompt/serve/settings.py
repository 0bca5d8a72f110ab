"""The ``serve:`` config section: where to listen and the limits that keep one bad client from hurting others.

How hard a prompt is searched for per image is the ``decode:`` section's ``mode`` (its ``budget_s`` is a time cap).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from img2prompt.config import StrictModel

ImageFormat = Literal["png", "jpeg", "webp", "gif", "bmp"]


class ServeConfig(StrictModel):
    """Defaults suit one CPU box; every limit answers a 4xx (or 503 when busy) instead of running out of memory."""

    host: str = "127.0.0.1"
    device: str = "cpu"  # where the image model runs: cpu, cuda, cuda:1 ...
    port: int = Field(8000, ge=0, le=65535)
    max_upload_bytes: int = Field(10 * 2**20, gt=0)  # whole request body, single or batch
    max_pixels: int = Field(16_000_000, gt=0)  # per image, checked before decoding (decompression bombs)
    allowed_formats: list[ImageFormat] = Field(default_factory=lambda: ["png", "jpeg", "webp"])
    max_images: int = Field(16, ge=1)  # per batch request
    max_in_flight: int = Field(16, ge=1)  # concurrent /v1 requests; more are answered 503 at once
    batch_size: int = Field(16, ge=1)  # images per forward pass of the micro-batcher
    batch_wait_ms: float = Field(5.0, ge=0)  # how long the first request of a batch waits for company
    top_k: int = Field(5, ge=0)  # nearest bank prompts returned by default
    max_top_k: int = Field(50, ge=0)

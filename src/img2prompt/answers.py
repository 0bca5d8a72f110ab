"""The one answer to "which prompt made this image?": ``Interrogator.interrogate`` returns it, ``img2prompt
interrogate --json`` prints it, one per line, and the HTTP API sends it (its OpenAPI schema is this model), so a
field means the same everywhere.

``describe`` fills the prompt fields from a predicted embedding; the surfaces add the image's name, the timings
of their own steps and the model's warning.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from img2prompt.decode import PromptDecoder

COSINE = ("cosine of this prompt's text embedding (all-MiniLM-L6-v2) to the image's predicted embedding, from -1 "
          "to 1: how closely the text matches what the model predicted for the image, not how sure the model is")
CAPPED = ("true when a time cap (decode.budget_s) cut the search short: an uncapped search may have found a closer "
          "prompt. A mode alone is a fixed amount of work, so without a cap the same image gets the same prompt")


class Neighbour(BaseModel):
    """A prompt of the bank near the image's predicted embedding."""

    prompt: str
    cosine: float = Field(description="cosine of this bank prompt's embedding to the image's predicted embedding")


class Timings(BaseModel):
    """Milliseconds spent on each step of one image; ``batch_size`` is how many images shared its forward pass."""

    read_ms: float = Field(description="reading the file or the request body")
    image_ms: float = Field(description="decoding and checking the image")
    queue_ms: float = Field(description="waiting for a forward pass (the server's micro-batches)")
    embed_ms: float = Field(description="the model's forward pass")
    decode_ms: float = Field(description="composing the prompt and finding the nearest bank prompts")
    total_ms: float
    batch_size: int


class Answer(BaseModel):
    """One image's answer."""

    image: str = Field(description="the image: its path, upload file name, JSON name or position (image[0])")
    model: str = Field(description="the model's name (a server shows it without folders)")
    prompt: str | None = Field(description="the prompt composed from the bank's prompts and phrases to match the "
                                           "predicted embedding; null without a prompt bank or with decode=false")
    cosine: float | None = Field(description=COSINE)
    mode: str | None = Field(description="the search mode that composed the prompt (fast or best)")
    capped: bool = Field(description=CAPPED)
    nearest: list[Neighbour] = Field(description="the bank prompts closest to the embedding, best first")
    embedding: list[float] = Field(description="the predicted prompt embedding: 384 floats, unit length")
    warning: str | None = Field(None, description="what the model cannot do, e.g. that it learned only synthetic "
                                                  "scenes and is not useful on real images")
    timings: Timings


def describe(vector: np.ndarray, decoder: PromptDecoder | None, *, top_k: int, decode: bool, mode: str | None
             ) -> dict:
    """The prompt fields of an answer for a predicted embedding (the prompt, its cosine, the nearest bank prompts)
    and the milliseconds it took; without a decoder, only the embedding."""
    started = time.perf_counter()
    fields: dict = {"prompt": None, "cosine": None, "mode": None, "capped": False, "nearest": [],
                    "embedding": [float(x) for x in vector]}
    if decoder is not None:
        fields["nearest"] = [Neighbour(prompt=p, cosine=round(c, 6)) for p, c in decoder.nearest(vector, top_k)
                             ] if top_k else []
        if decode:
            result = decoder.decode(vector, mode=mode)
            fields |= {"prompt": result.text, "cosine": round(result.cosine, 6), "capped": result.capped,
                       "mode": mode or decoder.config.mode}
    fields["decode_ms"] = (time.perf_counter() - started) * 1000
    return fields

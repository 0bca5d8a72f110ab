"""What the HTTP routes serve with, held on ``app.state.service`` by ``create_app``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from img2prompt.decode import DecodeConfig
from img2prompt.serve.batcher import MicroBatcher
from img2prompt.serve.limits import Gate
from img2prompt.serve.settings import ServeConfig

if TYPE_CHECKING:
    from img2prompt.decode import PromptDecoder


@dataclass
class Service:
    """What the routes serve with: the model (behind its micro-batcher), the decoder, and the limits."""

    settings: ServeConfig
    batcher: MicroBatcher
    decoder: PromptDecoder | None
    gate: Gate
    name: str  # the model's display name
    warning: str | None  # what the model cannot do (the quickstart's models learned only synthetic scenes)
    decode_config: DecodeConfig = field(default_factory=DecodeConfig)
    decode_pool: ThreadPoolExecutor | None = None

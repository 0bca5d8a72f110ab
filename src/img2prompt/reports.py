"""The one way HTML reports are made: Jinja2 templates shipped in ``img2prompt/templates``, autoescaped.

Both reports (curation and evaluation) render through ``render`` and extend ``templates/base.html``, so
escaping, the page frame and the style live in one place. A report is one self-contained file: every plot and
image is inlined as a data URI (``inline_figure``), so a mailed copy or a CI artefact shows everything.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from img2prompt.files import atomic_path, write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("img2prompt", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, path: str | Path, **context: Any) -> Path:
    """Render ``templates/<template>`` with ``context`` and write it to ``path`` atomically."""
    return write_text_atomic(path, _environment().get_template(template).render(**context))


def data_uri(data: bytes, mime: str) -> str:
    """``data`` as a ``data:`` URI, which a page can show without any file beside it."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def inline_figure(figure: Figure, path: Path) -> str:
    """Save a matplotlib figure as a PNG at ``path`` (for slides) and return the same PNG as a data URI
    (for the page); the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:  # read back from the temporary: under all_or_none it is renamed later
            figure.savefig(tmp, format="png", dpi=DPI)
            png = tmp.read_bytes()
    finally:
        plt.close(figure)
    return data_uri(png, "image/png")

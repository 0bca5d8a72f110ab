"""The one way HTML reports are made: Jinja2 templates shipped in ``img2prompt/templates``, autoescaped.

Both reports (curation and evaluation) render through ``render``, so escaping, the page frame and the
style live in one place.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from img2prompt.files import write_text_atomic


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("img2prompt", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, path: str | Path, **context: Any) -> Path:
    """Render ``templates/<template>`` with ``context`` and write it to ``path`` atomically."""
    return write_text_atomic(path, _environment().get_template(template).render(**context))

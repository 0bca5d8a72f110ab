"""Atomic file writes: every output is written beside its target and renamed, so a killed run leaves
either the old file or the new one, never half of one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield ``path.tmp`` to write to; it replaces ``path`` when the block ends without an error.

    Creates the parent folder. The temporary name does not end in the target's suffix, so writers that
    guess a format from the name (matplotlib) must be given it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    yield tmp
    tmp.replace(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; creates the parent folder."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)

"""What was fetched and verified, per corpus, in ``<root>/.download/<corpus>.json``: the corpus's fingerprint and
each file's size and modification time. A corpus whose record matches its catalog entry and whose files still stat
the same is present and verified, and is skipped without reading a byte (a 100 GB corpus is not hashed again)."""

from __future__ import annotations

import json
from pathlib import Path

from img2prompt.files import write_text_atomic

STATE_DIR = ".download"


def _record_path(root: Path, corpus: str) -> Path:
    return root / STATE_DIR / f"{corpus}.json"


def _stat(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


def is_verified(root: Path, corpus: str, fingerprint: str) -> bool:
    """The corpus was fetched and verified with this fingerprint, and none of its files changed since."""
    try:
        record = json.loads(_record_path(root, corpus).read_text(encoding="utf-8"))
        return record["fingerprint"] == fingerprint and all(
            _stat(root / name) == stat for name, stat in record["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def mark_verified(root: Path, corpus: str, fingerprint: str, files: list[Path]) -> None:
    """Record ``files`` (under ``root``) as the verified content of ``corpus``."""
    record = {"fingerprint": fingerprint, "files": {f.relative_to(root).as_posix(): _stat(f) for f in files}}
    write_text_atomic(_record_path(root, corpus), json.dumps(record, indent=1))

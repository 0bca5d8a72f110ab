"""Atomic file writes: every output is written beside its target and renamed, so a killed run leaves
either the old file or the new one, never half of one."""

from __future__ import annotations

import glob
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"


def _host() -> str:
    return socket.gethostname().replace(".", "_")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it replaces ``path`` when the block ends without an
    error, and is deleted when the block fails (the old file stays as it was).

    The temporary name holds the host, process and thread, so concurrent writers never share one; one left
    by a killed process of this host is removed the next time the target is written. Creates the parent
    folder. The name does not end in the target's suffix, so writers that guess a format from the name
    (matplotlib) must be given it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_strays(path)
    tmp = path.with_name(f".{path.name}.{_host()}.{os.getpid()}-{threading.get_ident()}{TMP_SUFFIX}")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_strays(path: Path) -> None:
    """Delete temporaries of ``path`` left by dead processes of this host (a SIGKILL skips every cleanup)."""
    prefix = f".{path.name}.{_host()}."
    for stray in path.parent.glob(f"{glob.escape(prefix)}*{TMP_SUFFIX}"):
        pid = stray.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            stray.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; creates the parent folder."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)

"""Atomic file writes: every output is written beside its target and renamed, so a killed run leaves
either the old file or the new one, never half of one.

A write that fails (no space left, a read-only or foreign folder, a file where a folder should be) is a
one-line error naming the output and the cause, and leaves nothing half-written in the output's place. Outputs
of several files (a report folder) are written under ``all_or_none`` and appear together or not at all.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from img2prompt.errors import Img2PromptError, fail

TMP_SUFFIX = ".tmp"
# errors of the place written to, not of the data: each becomes "<output>: cannot write: <cause>"
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                errno.ENOTDIR, errno.EISDIR}
_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)")  # how Rust writers (safetensors) report one
_STAGED: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("img2prompt_staged_outputs", default=None)


def _host() -> str:
    return socket.gethostname().replace(".", "_")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it replaces ``path`` when the block ends without an
    error (or when the enclosing ``all_or_none`` block does), and is deleted when the block fails (the old file
    stays as it was). A failure of the place written to becomes a one-line ``Img2PromptError`` naming ``path``.

    The temporary name holds the host, process and thread, so concurrent writers never share one; one left
    by a killed process of this host is removed the next time the target is written. Creates the parent
    folder. The name does not end in the target's suffix, so writers that guess a format from the name
    (matplotlib) must be given it.
    """
    path = Path(path)
    make_folder(path.parent, output=path)
    _remove_strays(path)
    tmp = path.with_name(f".{path.name}.{_host()}.{os.getpid()}-{threading.get_ident()}{TMP_SUFFIX}")
    try:
        yield tmp
        staged = _STAGED.get()
        if staged is None:
            tmp.replace(path)
        else:
            staged.append((tmp, path))
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        code = _write_errno(exc, (tmp, path))
        if code is None:
            raise
        raise fail(path, f"cannot write: {_cause(code)}") from None


@contextmanager
def all_or_none() -> Iterator[None]:
    """The outputs written with ``atomic_path`` in this block (in this thread) take their names together when it
    ends, or none does: a report folder is complete or as it was before, never half of each. Nested blocks join
    the outermost one."""
    if _STAGED.get() is not None:
        yield
        return
    staged: list[tuple[Path, Path]] = []
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _STAGED.reset(token)
    for tmp, path in staged:
        tmp.replace(path)


def make_folder(folder: str | Path, *, output: str | Path | None = None) -> Path:
    """``mkdir -p folder``; a failure is one line naming ``output`` (the file to be written there; default the
    folder) and the cause, e.g. ``out/a.csv: cannot write: out is a file, not a folder``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise fail(output or folder, f"cannot write: {_file_in_the_way(folder)} is a file, not a folder") from None
    except OSError as exc:
        raise cannot_write(output or folder, exc) from None
    return folder


def check_output(path: str | Path, *, folder: bool = False) -> Path:
    """Fail now, before any work, when ``path`` (a file, or a folder with ``folder=True``) cannot be written
    (``unwritable`` says why); returns it."""
    why = unwritable(path, folder=folder)
    if why is not None:
        raise fail(path, why)
    return Path(path)


def unwritable(path: str | Path, *, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or a folder with ``folder=True``) cannot be written, or None: a file where a folder
    is needed (or a folder where a file is), or a place this process may not write in. Writes nothing but an
    unnamed probe file; a disk that fills up shows only when the output is written."""
    path = Path(path).expanduser()
    if not folder and path.is_dir():
        return "is a folder: give a file name"
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot write: {_file_in_the_way(existing)} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"cannot write: {_cause(exc.errno)}"
    return None


def cannot_write(path: str | Path, exc: OSError) -> Img2PromptError:
    """The one-line error of a write to ``path`` that failed with ``exc``, for writers that cannot go through
    ``atomic_path`` (an appended manifest, a preallocated array)."""
    return fail(path, f"cannot write: {_cause(exc.errno)}")


def _file_in_the_way(folder: Path) -> Path:
    """The first part of ``folder`` that exists and is not a folder."""
    for part in (*reversed(folder.parents), folder):
        if part.exists() and not part.is_dir():
            return part
    return folder


def _write_errno(exc: BaseException, ours: tuple[Path, ...]) -> int | None:
    """The errno of a failure of the place written to, found in ``exc`` or the exceptions it arose from (torch
    and safetensors wrap the OSError); None for anything else, such as an input file that could not be read."""
    names = {str(p) for p in ours}
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, Img2PromptError):
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRORS:
            return seen.errno if seen.filename is None or str(seen.filename) in names else None
        match = _OS_ERROR_IN_TEXT.search(str(seen)) if not isinstance(seen, OSError) else None
        if match and int(match.group(1)) in WRITE_ERRORS:
            return int(match.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


def _cause(code: int | None) -> str:
    """``no space left on device``, ``permission denied``, ``read-only file system`` ..."""
    return os.strerror(code).lower() if code else "unknown error"


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


def human_size(size: float) -> str:
    """Bytes as a person reads them: ``605.1 MB``, ``3.9 GB`` (decimal units, as the hub shows sizes)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError  # the loop always returns

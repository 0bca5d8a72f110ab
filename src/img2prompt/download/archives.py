"""Unpack the members of a zip or tar archive that the readers need, each written atomically beside it."""

from __future__ import annotations

import fnmatch
import lzma
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from img2prompt.errors import fail
from img2prompt.files import atomic_path


def extract(archive: Path, members: list[str], into: Path, *, flatten: bool = False) -> list[Path]:
    """Write every member matching one of ``members`` (names or globs; base names when ``flatten``) under ``into``,
    keeping its path (or only its base name when ``flatten``); returns the files written, in archive order.
    A pattern that matches nothing is an error naming the archive."""
    written: list[Path] = []
    matched: set[str] = set()
    with _open(archive) as entries:
        for name, read in entries:
            key = PurePosixPath(name).name if flatten else name
            hits = [m for m in members if fnmatch.fnmatchcase(key, m)]
            if not hits or name.endswith("/"):
                continue
            relative = PurePosixPath(key)
            if relative.is_absolute() or ".." in relative.parts:
                raise fail(archive, f"member {name!r} would land outside {into}")
            matched.update(hits)
            target = into / relative
            with atomic_path(target) as tmp, read() as source, open(tmp, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            written.append(target)
    missing = [m for m in members if m not in matched]
    if missing:
        raise fail(archive, f"no member {missing[0]!r} in the archive")
    return written


@contextmanager
def _open(archive: Path) -> Iterator[Iterator[tuple[str, Callable[[], IO[bytes]]]]]:
    """(member name, opener) pairs of a zip or a (compressed) tar."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                yield ((info.filename, lambda info=info: zipped.open(info)) for info in zipped.infolist())
            return
        with tarfile.open(archive) as tarred:
            yield ((member.name, lambda member=member: _tar_member(tarred, member)) for member in tarred
                   if member.isfile())
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise fail(archive, f"not a readable zip or tar archive ({exc})") from None


def _tar_member(tarred: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    handle = tarred.extractfile(member)
    if handle is None:
        raise fail(member.name, "not a regular file")
    return handle

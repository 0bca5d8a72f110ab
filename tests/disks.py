"""Places that refuse writes, made by the operating system itself (no code under test is replaced): a small tmpfs
that fills up (``ENOSPC``) and a folder the process may not write in (``chattr +i`` as root, ``chmod`` otherwise).

Mounting needs root (CI runs as root); elsewhere the tests that need a disk skip and say why.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PAGE = 4096  # tmpfs counts whole pages


class Disk:
    """A mounted tmpfs of ``size`` bytes at ``root``; ``fill`` leaves a chosen number of bytes free."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / ".filler"

    def clear(self) -> None:
        for entry in self.root.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def fill(self, free: int = 0) -> None:
        """Fill the disk (besides what is on it) until about ``free`` bytes (whole pages) are left."""
        self.filler.unlink(missing_ok=True)
        with self.filler.open("wb") as handle:
            try:
                while True:
                    handle.write(bytes(64 * 1024))
                    handle.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        written = self.filler.stat().st_size // PAGE * PAGE
        os.truncate(self.filler, max(0, written - -(-free // PAGE) * PAGE))

    def free(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize


@contextmanager
def mounted_disk(root: Path, size: int) -> Iterator[Disk]:
    """A tmpfs of ``size`` bytes mounted at ``root`` for the block (skips the test where mounting is refused)."""
    root.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True,
                           text=True, check=False) if shutil.which("mount") else None
    if mount is None or mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip() if mount else 'no mount command'}): "
                    "the full-disk cases need root")
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@contextmanager
def unwritable(folder: Path) -> Iterator[Path]:
    """``folder`` made unwritable for this process: immutable as root (root ignores modes), mode 0555 otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    if as_root and not shutil.which("chattr"):
        pytest.skip("root ignores folder modes and chattr is not installed")
    if as_root:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


UNWRITABLE = ("operation not permitted", "permission denied")  # immutable folder, read-only mode

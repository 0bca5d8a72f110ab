"""One file over HTTP(S), resumable: bytes go to ``<target>.part`` beside the target; a cut connection is retried
from where it stopped with a ``Range`` request, and a killed run resumes from the ``.part`` file the next time.
The finished file is checked against its pinned size and checksum before it takes the target's name, so the target
is either absent or complete and verified; a mismatch deletes the ``.part`` (its bytes cannot be trusted) and is a
one-line error naming the file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
from tqdm.auto import tqdm

from img2prompt.errors import fail
from img2prompt.files import cannot_write, make_folder

CHUNK = 1 << 20
PART_SUFFIX = ".part"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def part_path(target: Path) -> Path:
    return target.with_name(target.name + PART_SUFFIX)


def hash_file(path: Path, algorithm: str = "sha256") -> hashlib._Hash:
    """The running digest of ``path``'s bytes (a resumed download goes on feeding it)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest


class _Cut(Exception):
    """The connection ended before the file did; the bytes so far are kept."""


def fetch(url: str, target: Path, *, size: int | None, checksum: str | None, progress: bool = True,
          retries: int = 3, timeout: float = 60.0) -> None:
    """Download ``url`` to ``target`` (resuming ``<target>.part``) and verify it; ``checksum`` is ``ALGO:HEX``."""
    algorithm, _, expected = (checksum or "sha256:").partition(":")
    part = part_path(target)
    make_folder(target.parent, output=target)
    if part.exists() and size is not None and part.stat().st_size > size:
        part.unlink()  # longer than the pinned file: not a prefix of it
    have = part.stat().st_size if part.exists() else 0
    with tqdm(total=size, initial=have, unit="B", unit_scale=True, desc=target.name, disable=not progress,
              leave=False) as bar, httpx.Client(follow_redirects=True, timeout=timeout) as client:
        download = _Download(url, part, target, algorithm, bar)
        for attempt in range(retries + 1):
            try:
                download.get(client)
                break
            except _Cut as exc:
                if attempt == retries:
                    raise fail(target, f"download cut at {download.have} bytes ({exc}); run again to resume "
                                       f"from {part.name}") from None
    _verify(part, target, size, algorithm, expected, download.digest.hexdigest())
    part.replace(target)


class _Download:
    """The ``.part`` file and the running digest of every byte in it."""

    def __init__(self, url: str, part: Path, target: Path, algorithm: str, bar: tqdm):
        self.url, self.part, self.target, self.algorithm, self.bar = url, part, target, algorithm, bar
        self.digest = hash_file(part, algorithm) if part.exists() else hashlib.new(algorithm)

    @property
    def have(self) -> int:
        return self.part.stat().st_size if self.part.exists() else 0

    def get(self, client: httpx.Client) -> None:
        """One GET from the end of the ``.part`` file to the end of the body."""
        have = self.have
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            with client.stream("GET", self.url, headers=headers) as response:
                if response.status_code == 416 and have:  # nothing past what we hold: the file is already whole
                    return
                if response.status_code >= 400:
                    raise fail(self.target, f"HTTP {response.status_code} from {self.url}")
                mode = "ab"
                if response.status_code == 206:
                    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                    if match is None or int(match.group(1)) != have:
                        raise fail(self.target, f"{self.url} answered a range request for bytes {have}- with "
                                                f"{response.headers.get('Content-Range')!r}")
                elif have:  # the server ignored the range: start over
                    mode, self.digest = "wb", hashlib.new(self.algorithm)
                    self.bar.reset()
                total = _total_size(response)
                if total is not None and self.bar.total is None:
                    self.bar.total = total
                with open(self.part, mode) as out:
                    for block in response.iter_bytes():  # as it arrives: a cut keeps every byte received
                        out.write(block)
                        self.digest.update(block)
                        self.bar.update(len(block))
        except httpx.TransportError as exc:
            raise _Cut(f"{type(exc).__name__}: {exc}".strip(": ")) from None
        except OSError as exc:  # writing the .part file: a full disk, a folder we may not write in
            raise cannot_write(self.part, exc) from None


def _total_size(response: httpx.Response) -> int | None:
    if response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        return int(match.group(3)) if match and match.group(3) != "*" else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _verify(part: Path, target: Path, size: int | None, algorithm: str, expected: str, got: str) -> None:
    """Size, then checksum; a mismatch deletes the ``.part`` and names the target."""
    actual = part.stat().st_size if part.exists() else 0
    if size is not None and actual != size:
        part.unlink(missing_ok=True)
        raise fail(target, f"size mismatch: expected {size} bytes, got {actual} (deleted; run again to fetch it anew)")
    if expected and got != expected.lower():
        part.unlink(missing_ok=True)
        raise fail(target, f"{algorithm} mismatch: expected {expected}, got {got} (deleted; run again to fetch it "
                           "anew)")

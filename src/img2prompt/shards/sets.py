"""A shard set: WebDataset tars plus a manifest of finished shards.

A shard is written to a temporary and renamed when complete, then recorded in ``manifest.jsonl`` with its sample
count, size and sha256; readers trust only shards the manifest lists, so a killed writer leaves at most a stray
temporary that the next run removes. Samples are read in order (``iter_samples``) or one by its byte range
(``read_record``, for training)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from img2prompt.errors import fail
from img2prompt.files import atomic_path, cannot_write, make_folder
from img2prompt.shards.index import index_path, scan_shard, sha256_file, write_index
from img2prompt.shards.records import Sample, decode_sample, encode_image
from img2prompt.space import npy_bytes

MANIFEST = "manifest.jsonl"

def write_shard(
    path: str | Path,
    samples: Iterable[Sample],
    image_format: str = "webp",
    fast: bool = False,
) -> dict[str, Any]:
    """Write ``samples`` to the tar at ``path`` atomically, and its index beside it; returns the manifest entry
    (not yet recorded).

    Members get a fixed mtime (0), so the tar bytes are a pure function of the samples (reproducible shards).
    The index is built from the bytes just hashed, before the tar takes its name: a finished shard has one.
    """
    import webdataset as wds

    path = Path(path)
    count = 0
    with atomic_path(path) as tmp:
        # A fixed mtime makes a shard a pure function of its samples: reruns give byte-identical tars.
        with tmp.open("wb") as handle, wds.TarWriter(handle, mtime=0.0) as sink:
            for sample in samples:
                sink.write(
                    {
                        "__key__": sample.key,
                        image_format: encode_image(sample.image, image_format, fast=fast),
                        "json": json.dumps(sample.meta, sort_keys=True).encode("utf-8"),
                        "emb.npy": npy_bytes(sample.embedding),
                    }
                )
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        digest = sha256_file(tmp)
        write_index(scan_shard(tmp, digest, name=path.name), index_path(path))
    return {"shard": path.name, "count": count, "bytes": path.stat().st_size, "sha256": digest}

class Manifest:
    """The list of finished shards of one output folder; appends are locked, so ranks can share it."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        entries = []
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                # A writer killed mid-line leaves a torn last line: that shard is simply not finished.
                if line_no != len(lines):
                    raise fail(self.path, f"line {line_no}: not JSON") from None
        return entries

    def finished(self) -> set[str]:
        return {entry["shard"] for entry in self.entries()}

    def record(self, entry: dict[str, Any]) -> None:
        """Append ``entry``; a line torn by a full disk or a kill reads as an unfinished shard."""
        make_folder(self.folder, output=self.path)
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(json.dumps(entry, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError as exc:
            raise cannot_write(self.path, exc) from None

    def shard_paths(self) -> list[Path]:
        """Finished shards, sorted by name; a listed shard that is missing on disk is an error."""
        paths = sorted(self.folder / name for name in self.finished())
        for path in paths:
            if not path.exists():
                raise fail(path, f"listed in {self.path} but missing")
        return paths

    def total(self) -> int:
        return sum(int(entry["count"]) for entry in self.entries())

def is_shards(source: str | Path) -> bool:
    """A shard folder (it has a manifest) or one shard tar: what predict, evaluate and ensemble accept beside
    image files and prompt tables."""
    source = Path(source)
    return (source / MANIFEST).is_file() or (source.suffix == ".tar" and source.is_file())

def find_shards(source: str | Path) -> list[Path]:
    """Shards of a folder (through its manifest) or of a single tar file."""
    return [path for path, _ in shard_entries(source)]

def shard_entries(source: str | Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """Shards of a folder with their manifest entries, sorted by name, or a single tar file (no entry)."""
    source = Path(source)
    if source.is_dir():
        manifest = Manifest(source)
        entries = {entry["shard"]: entry for entry in manifest.entries()}
        paths = manifest.shard_paths()
        if not paths:
            raise fail(source, f"no finished shards (no entries in {MANIFEST})")
        return [(path, entries[path.name]) for path in paths]
    if source.suffix == ".tar" and source.exists():
        return [(source, None)]
    raise fail(source, "not a shard folder or .tar file")

def read_record(path: str | Path, offset: int, size: int) -> dict[str, Any]:
    """One sample's raw record (bytes per member, ``__key__``, ``__url__``), read by its byte range in the tar."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise fail(path, f"truncated: the sample at byte {offset} ends past the end of the file")
    try:
        records = list(group_by_keys(tar_file_expander([{"url": str(path), "stream": io.BytesIO(data)}],
                                                       eof_value=None)))
    except (tarfile.TarError, ValueError, OSError) as exc:
        raise fail(path, f"damaged tar member at byte {offset} ({exc.args[0] if exc.args else exc})") from None
    if len(records) != 1:
        raise fail(path, f"no single sample at byte {offset}: its index does not describe it "
                         f"(delete {index_path(path).name} to rebuild it)")
    return records[0]

def iter_records(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Raw WebDataset records (bytes per member, ``__key__``, ``__url__``) of tar files, in order; a damaged tar
    is a one-line error naming it."""

    import webdataset as wds

    for path in paths:
        try:
            yield from wds.tarfile_to_samples()([{"url": str(path)}])
        except (tarfile.TarError, OSError, ValueError) as exc:
            raise fail(path, f"unreadable shard ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
                from None

def iter_samples(paths: Iterable[str | Path]) -> Iterator[Sample]:
    """Read samples in order from tar files (no shuffling: training builds its own pipeline)."""
    for raw in iter_records(paths):
        yield decode_sample(raw)

"""One streaming reader per prompt or caption corpus, in the format each corpus is published in.

Every reader yields prompt strings one at a time, so a 100M-row input never sits in memory (JSON files are
parsed incrementally with ijson, Parquet row group by row group in record batches). A malformed line, row,
item or Parquet row group never ends the run: it is recorded in ``BadRows`` with its file and position, and
the reader moves on to the next one. A missing file or a file that is not the announced format at all is a
user error (``fail``), raised before anything is written.

Formats (the names used as ``type:`` in a curation config):

- ``text``: one prompt per line (LLM-written prompts, prompt dumps).
- ``csv``: a delimited file; ``column`` is a header name, or a 0-based index when ``header`` is false
  (e.g. the tab-separated ``idx, score, prompt, image`` files of the 28th-place solution).
- ``jsonl``: one JSON object per line; ``column`` names the field (default ``prompt``).
- ``parquet``: any Parquet file; ``column`` names the text column.
- ``diffusiondb``: DiffusionDB's ``metadata.parquet`` (text column ``prompt``).
- ``coyo``: COYO-700M Parquet parts (text column ``text``); with ``min_similarity``, only the rows whose image-text
  similarity column (default ``clip_similarity_vitb32``, CLIP ViT-B/32 cosine, as COYO ships it) is above it, as
  the winner kept COYO captions above 0.3.
- ``coco``: COCO caption annotations JSON (``annotations[].caption``).
- ``vizwiz``: VizWiz-Captions JSON (COCO layout; pre-canned and rejected captions are skipped).
- ``textcaps``: TextCaps JSON (``data[].caption_str``).
- ``flickr``: Flickr8k / Flickr30k token files (``image.jpg#n<TAB>caption``).
- ``localized_narratives``: Localized Narratives JSONL (``caption``): the Open Images and ADE20K captions.
- ``scenes``: ``count`` prompts from the project's scenes grammar (no file).
"""

from __future__ import annotations

import _csv
import csv
import glob
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import ijson
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.errors import fail
from img2prompt.files import atomic_path

SourceType = Literal[
    "text", "csv", "jsonl", "parquet", "diffusiondb", "coyo", "coco", "vizwiz", "textcaps", "flickr",
    "localized_narratives", "scenes",
]
DEFAULT_COLUMN = {"csv": "prompt", "jsonl": "prompt", "parquet": "prompt", "diffusiondb": "prompt",
                  "coyo": "text", "localized_narratives": "caption"}


BAD_ROWS_COLUMNS = ("file", "unit", "number", "reason")
_TSV_UNSAFE = str.maketrans("\t\r\n", "   ")


@dataclass
class BadRows:
    """Malformed rows seen while reading: counted per file, each one written to ``sink`` (a TSV) when there is
    one, and only the first ``keep`` held in memory (for the report), so millions of them cost no memory.

    ``unit`` says what ``number`` counts: a 1-based ``line``, Parquet ``row`` or JSON ``item``, or a 0-based
    ``row group`` (as pyarrow numbers them). ``damaged`` holds the files whose rest could not be read at all (a
    cut JSON, an unreadable Parquet row group): how many prompts they lost is unknown, so curation stops on them
    unless the source allows partial reads.
    """

    keep: int = 20
    per_file: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)  # file -> the first such reason
    sink: TextIO | None = None

    def add(self, path: Path, number: int, why: str, unit: str = "line", *, lost_rest: bool = False) -> None:
        why = " ".join(why.split())  # one line without tabs: pyarrow's messages span lines
        self.per_file[str(path)] += 1
        if lost_rest:
            self.damaged.setdefault(str(path), f"{unit} {number}: {why}")
        if len(self.examples) < self.keep:
            where = f"{number}" if unit == "line" else f" {unit} {number}"
            self.examples.append(f"{path}:{where}: {why}")
        if self.sink is not None:
            self.sink.write(f"{str(path).translate(_TSV_UNSAFE)}\t{unit}\t{number}\t{why}\n")

    @property
    def total(self) -> int:
        return sum(self.per_file.values())


@dataclass(frozen=True)
class ReadOptions:
    """The per-source knobs a reader may use (see the module docstring for which reader reads which)."""

    column: str | None = None
    delimiter: str = ","
    header: bool = True
    count: int = 0
    seed: int = 0
    min_similarity: float | None = None  # Parquet readers: keep rows whose similarity_column is above this
    similarity_column: str = "clip_similarity_vitb32"


@contextmanager
def bad_rows_file(path: Path) -> Iterator[BadRows]:
    """A ``BadRows`` streaming every entry to the TSV ``path``, which appears (atomically) when the block ends."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as sink:
        sink.write("\t".join(BAD_ROWS_COLUMNS) + "\n")
        yield BadRows(sink=sink)


Reader = Callable[[Path, ReadOptions, BadRows], Iterator[str]]


def expand_paths(pattern: str | list[str]) -> list[Path]:
    """The files a source names: a path, a glob (``coyo/part-*.parquet``) or a list of them; each glob sorted,
    for a stable order."""
    if isinstance(pattern, list):
        return [path for item in pattern for path in expand_paths(item)]
    matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
    paths = [Path(m) for m in matches]
    if not paths or not all(p.is_file() for p in paths):
        missing = next((p for p in paths if not p.is_file()), Path(pattern))
        raise fail(missing, "source file not found")
    return paths


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file; undecodable bytes become U+FFFD for the rules to catch."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def read_text(path: Path, options: ReadOptions, bad: BadRows) -> Iterator[str]:
    for _, line in _lines(path):
        if line.strip():
            yield line


def read_csv(path: Path, options: ReadOptions, bad: BadRows) -> Iterator[str]:
    column = options.column or DEFAULT_COLUMN["csv"]
    quoting = csv.QUOTE_NONE if options.delimiter == "\t" else csv.QUOTE_MINIMAL  # TSV dumps are unquoted
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        rows = csv.reader(handle, delimiter=options.delimiter, quoting=quoting)
        if options.header:
            try:
                header = next(rows, [])
            except csv.Error as exc:
                raise fail(path, f"unreadable CSV header ({exc})") from None
            if column not in header:
                raise fail(path, f"no column {column!r} in the header ({', '.join(header)[:200]})")
            index = header.index(column)
        else:
            if not column.isdigit():
                raise fail(path, f"column must be a 0-based index when header is false, got {column!r}")
            index = int(column)
        for row in _csv_rows(rows, path, bad):
            if not row:
                continue
            if len(row) <= index:
                bad.add(path, rows.line_num, f"{len(row)} field(s), no column {column!r}")
                continue
            yield row[index]


def _csv_rows(rows: _csv.Reader, path: Path, bad: BadRows) -> Iterator[list[str]]:
    """The rows of a ``csv.reader``; one it cannot parse (e.g. a field over ``csv.field_size_limit``) is
    counted and skipped, and the reader resumes on the next line."""
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            bad.add(path, rows.line_num, f"unreadable CSV row ({exc})")
            continue
        yield row


def read_jsonl(path: Path, options: ReadOptions, bad: BadRows) -> Iterator[str]:
    column = options.column or DEFAULT_COLUMN["jsonl"]
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.add(path, number, f"invalid JSON ({exc.msg})")
            continue
        value = record.get(column) if isinstance(record, dict) else None
        if not isinstance(value, str):
            bad.add(path, number, f"no text field {column!r}")
            continue
        yield value


def read_localized_narratives(path: Path, options: ReadOptions, bad: BadRows) -> Iterator[str]:
    column = options.column or DEFAULT_COLUMN["localized_narratives"]
    yield from read_jsonl(path, ReadOptions(column=column), bad)


def _parquet_reader(default_column: str) -> Reader:
    def read(path: Path, options: ReadOptions, bad: BadRows) -> Iterator[str]:
        column = options.column or default_column
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise fail(path, f"not a readable Parquet file ({exc})") from None
        columns = [column] if options.min_similarity is None else [column, options.similarity_column]
        for name in columns:
            if name not in parquet.schema_arrow.names:
                raise fail(path, f"no column {name!r} (has {', '.join(parquet.schema_arrow.names)[:200]})")
        end = 0
        for group in range(parquet.num_row_groups):  # a corrupt group costs its own rows, not the file's rest
            row, end = end, end + parquet.metadata.row_group(group).num_rows
            try:
                for batch in parquet.iter_batches(batch_size=65536, row_groups=[group], columns=columns):
                    texts = batch.column(0).to_pylist()
                    keep = _above(batch, options) if options.min_similarity is not None else None
                    for i, value in enumerate(texts):
                        row += 1
                        if keep is not None and not keep[i]:
                            continue
                        if isinstance(value, str):
                            yield value
                        else:
                            bad.add(path, row, f"{column} is {type(value).__name__}, not text", unit="row")
            except (pa.ArrowException, OSError) as exc:
                why = f"unreadable row group ({exc}); rows {row + 1}-{end} skipped"
                bad.add(path, group, why, unit="row group", lost_rest=True)

    return read


def _above(batch: pa.RecordBatch, options: ReadOptions) -> list[bool]:
    """Rows whose similarity is above ``min_similarity``, compared in the column's own precision (COYO's float32 0.3
    is not above 0.3); a missing similarity is not above anything."""
    import pyarrow.compute as pc

    scores = batch.column(1)
    cut = pa.scalar(options.min_similarity).cast(scores.type) if pa.types.is_floating(scores.type) else (
        options.min_similarity)
    return pc.fill_null(pc.greater(scores, cut), False).to_pylist()


def _json_items(path: Path, prefix: str, bad: BadRows) -> Iterator[tuple[int, dict]]:
    """(index, object) of each item of the array at ``prefix``, parsed incrementally."""
    index = 0
    with open(path, "rb") as handle:
        try:
            for index, item in enumerate(ijson.items(handle, prefix), start=1):
                if isinstance(item, dict):
                    yield index, item
                else:
                    bad.add(path, index, f"{prefix} #{index} is not an object", unit="item")
        except ijson.JSONError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if index == 0:
                raise fail(path, f"not a JSON file ({first_line})") from None
            why = f"JSON broken after item {index} ({first_line}); the rest of the file is skipped"
            bad.add(path, index + 1, why, unit="item", lost_rest=True)
            return
    if index == 0:
        raise fail(path, f"no items under {prefix.removesuffix('.item')!r}: not the expected JSON layout")


def _caption_json_reader(
    prefix: str, field_name: str, skip: Callable[[dict], bool] = lambda _: False
) -> Reader:
    def read(path: Path, options: ReadOptions, bad: BadRows) -> Iterator[str]:
        for index, item in _json_items(path, prefix, bad):
            caption = item.get(field_name)
            if not isinstance(caption, str):
                bad.add(path, index, f"item has no text field {field_name!r}", unit="item")
            elif not skip(item):
                yield caption

    return read


def _vizwiz_unusable(annotation: dict) -> bool:
    """VizWiz marks canned answers ("Quality issues are too severe ...") and rejected captions."""
    return bool(annotation.get("is_precanned") or annotation.get("is_rejected"))


_FLICKR_LINE = re.compile(r"\S+#\d+\s+(\S.*)")  # a few lines of the published Flickr8k file use a space


def read_flickr(path: Path, options: ReadOptions, bad: BadRows) -> Iterator[str]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        match = _FLICKR_LINE.match(line)
        if match is None:
            bad.add(path, number, "expected 'image.jpg#n<TAB>caption'")
            continue
        yield match.group(1)


def scene_prompts(count: int, seed: int) -> Iterator[str]:
    """Prompts of the project's scenes grammar (what the offline renderer can draw)."""
    from img2prompt.scene_grammar import random_prompts

    yield from random_prompts(count, seed)


READERS: dict[str, Reader] = {
    "text": read_text,
    "csv": read_csv,
    "jsonl": read_jsonl,
    "parquet": _parquet_reader(DEFAULT_COLUMN["parquet"]),
    "diffusiondb": _parquet_reader(DEFAULT_COLUMN["diffusiondb"]),
    "coyo": _parquet_reader(DEFAULT_COLUMN["coyo"]),
    "coco": _caption_json_reader("annotations.item", "caption"),
    "vizwiz": _caption_json_reader("annotations.item", "caption", _vizwiz_unusable),
    "textcaps": _caption_json_reader("data.item", "caption_str"),
    "flickr": read_flickr,
    "localized_narratives": read_localized_narratives,
}


def read_source(kind: str, pattern: str | list[str] | None, options: ReadOptions, bad: BadRows) -> Iterator[str]:
    """All prompts of one configured source, file after file, in a stable order."""
    if kind == "scenes":
        yield from scene_prompts(options.count, options.seed)
        return
    if pattern is None:
        raise fail(kind, "this source type needs a path")
    reader = READERS[kind]
    for path in expand_paths(pattern):
        yield from reader(path, options, bad)


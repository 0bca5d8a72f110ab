"""Kaggle "Stable Diffusion - Image to Prompts" file formats and metric.

Prompts file: ``imgId,prompt`` (standard CSV quoting; the host doubles quotes inside prompts).
Submission file: ``imgId_eId,val``, 384 rows per image, ids ``<imgId>_<dim>``, dims 0..383 in order.
Score: mean over images of the cosine similarity between predicted and true prompt embeddings.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from img2prompt.errors import fail
from img2prompt.files import atomic_path
from img2prompt.space import EMBEDDING_DIM

SUBMISSION_COLUMNS = ("imgId_eId", "val")
PROMPT_COLUMNS = ("imgId", "prompt")


def read_prompts_csv(path: str | Path) -> pd.DataFrame:
    """Read an ``imgId,prompt`` CSV; rejects wrong columns, non-UTF-8 text, empty prompts, duplicate ids and a
    file without a single prompt."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError:
        raise fail(path, "file not found") from None
    except IsADirectoryError:
        raise fail(path, "is a folder, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise fail(path, f"not UTF-8 text (byte {exc.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise fail(path, f"malformed CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in PROMPT_COLUMNS if c not in frame.columns]
    if missing:
        raise fail(path, f"expected columns imgId,prompt; got {','.join(map(str, frame.columns))}")
    if frame.empty:
        raise fail(path, "no prompts: the file has a header and no rows")
    frame = frame[list(PROMPT_COLUMNS)]
    for row, (img_id, prompt) in enumerate(zip(frame.imgId, frame.prompt, strict=True), start=2):
        if not img_id.strip():
            raise fail(path, f"line {row}: empty imgId")
        if not prompt.strip():
            raise fail(path, f"line {row}: empty prompt for imgId {img_id}")
    duplicated = frame.imgId[frame.imgId.duplicated()]
    if len(duplicated):
        raise fail(path, f"duplicate imgId {duplicated.iloc[0]}")
    return frame.reset_index(drop=True)


def write_submission(image_ids: Sequence[str], embeddings: np.ndarray, path: str | Path) -> Path:
    """Write the ``imgId_eId,val`` CSV exactly as the host did: float32 shortest repr, 384 rows per image.

    Written to a temporary file and renamed, so an interrupted run never leaves half a submission.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape != (len(image_ids), EMBEDDING_DIM):
        raise ValueError(f"expected embeddings of shape ({len(image_ids)}, {EMBEDDING_DIM}), got {embeddings.shape}")
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(SUBMISSION_COLUMNS) + "\n")
        for image_id, vector in zip(image_ids, embeddings, strict=True):
            # str(np.float32) is the shortest repr that round-trips in float32, as the host's file has.
            handle.writelines(f"{image_id}_{dim},{value!s}\n" for dim, value in enumerate(vector))
    return Path(path)


def read_submission(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read and validate a submission; returns image ids (in file order) and an (n, 384) float32 array."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise fail(path, "file not found") from None
    except IsADirectoryError:
        raise fail(path, "is a folder, not a submission CSV") from None
    image_ids: list[str] = []
    rows: list[list[float]] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != SUBMISSION_COLUMNS:
                raise fail(path, f"line 1: expected header imgId_eId,val; got {','.join(header or [])}")
            for line_no, record in enumerate(reader, start=2):
                if len(record) != 2:
                    raise fail(path, f"line {line_no}: expected 2 fields, got {len(record)}")
                key, raw = record
                image_id, sep, dim_text = key.rpartition("_")
                if not sep or not image_id or not dim_text.isdigit():
                    raise fail(path, f"line {line_no}: id {key!r} is not <imgId>_<dim>")
                dim = int(dim_text)
                if dim == 0:
                    if rows and len(rows[-1]) != EMBEDDING_DIM:
                        raise fail(path, f"line {line_no}: image {image_ids[-1]} has {len(rows[-1])} rows, "
                                         f"expected {EMBEDDING_DIM}")
                    if image_id in image_ids:
                        raise fail(path, f"line {line_no}: image {image_id} appears twice")
                    image_ids.append(image_id)
                    rows.append([])
                elif not image_ids or image_id != image_ids[-1] or dim != len(rows[-1]):
                    expected = f"{image_ids[-1]}_{len(rows[-1])}" if image_ids else "<imgId>_0"
                    raise fail(path, f"line {line_no}: id {key!r} out of order, expected {expected}")
                if dim >= EMBEDDING_DIM:
                    raise fail(path, f"line {line_no}: dimension {dim} >= {EMBEDDING_DIM}")
                try:
                    value = float(raw)
                except ValueError:
                    raise fail(path, f"line {line_no}: value {raw!r} is not a number") from None
                if not math.isfinite(value):
                    raise fail(path, f"line {line_no}: value {raw!r} is not finite")
                rows[-1].append(value)
        except UnicodeDecodeError as exc:
            raise fail(path, f"not UTF-8 text (byte {exc.start})") from None
    if not rows:
        raise fail(path, "no rows")
    if len(rows[-1]) != EMBEDDING_DIM:
        raise fail(path, f"image {image_ids[-1]} has {len(rows[-1])} rows, expected {EMBEDDING_DIM}")
    return image_ids, np.asarray(rows, dtype=np.float32)


def validate_submission(
    path: str | Path, expected_ids: Sequence[str] | None = None, norm_tolerance: float = 1e-3
) -> tuple[list[str], np.ndarray]:
    """Check a submission fully: structure, finite values, unit vectors, and (optionally) the id set."""
    image_ids, embeddings = read_submission(path)
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > norm_tolerance)
    if len(bad):
        i = int(bad[0])
        raise fail(path, f"line {2 + i * EMBEDDING_DIM}: image {image_ids[i]} has norm {norms[i]:.4f}, "
                         "expected a unit vector")
    if expected_ids is not None:
        missing = sorted(set(expected_ids) - set(image_ids))
        unknown = sorted(set(image_ids) - set(expected_ids))
        if missing:
            raise fail(path, f"missing image {missing[0]} ({len(missing)} missing in all)")
        if unknown:
            raise fail(path, f"unknown image {unknown[0]} ({len(unknown)} unknown in all)")
    return image_ids, embeddings

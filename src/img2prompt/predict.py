"""The predict stage: images -> 384-d prompt embeddings, as a predictions table and a Kaggle submission.

Any model ``models.load.load_model`` accepts (checkpoint, ensemble YAML, baseline spec). Inputs are image files,
folders and globs (ids: file stems, as Kaggle's) or generated shards (a shard folder or ``.tar``; ids: sample
keys, optionally one split), so the recipe predicts its val and test splits without exporting a file.
Under ``accelerate launch`` each process embeds its share of the inputs and the main process writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import check_output
from img2prompt.models.embedder import ImageEmbedder
from img2prompt.space import empty


def embed_files(
    model: ImageEmbedder, paths: Sequence[Path], batch_size: int = 32
) -> tuple[list[Path], np.ndarray, list[str]]:
    """Embed image files ``batch_size`` at a time; unreadable files are skipped and returned as one-line
    reasons."""
    from img2prompt.images import load_image

    done: list[Path] = []
    chunks: list[np.ndarray] = []
    skipped: list[str] = []
    bar = _progress(len(paths))
    for start in range(0, len(paths), batch_size):
        images, names = [], []
        batch = paths[start:start + batch_size]
        for path in batch:
            try:
                images.append(load_image(path))
                names.append(path)
            except Img2PromptError as exc:
                skipped.append(str(exc))
        if images:
            chunks.append(np.asarray(model.embed(images), dtype=np.float32))
            done.extend(names)
        bar.update(len(batch))
    bar.close()
    return done, np.concatenate(chunks) if chunks else empty(), skipped


def embed_shards(
    model: ImageEmbedder, shards: Sequence[Path], splits: Sequence[str] | None, batch_size: int = 32
) -> tuple[list[str], np.ndarray, list[str]]:
    """Embed the samples of ``splits`` (all when None) of shard tars; a sample whose image cannot be read is
    skipped and returned as a one-line reason."""
    from img2prompt.shards import iter_records, record_image, record_meta

    done: list[str] = []
    chunks: list[np.ndarray] = []
    skipped: list[str] = []
    images: list = []
    bar = _progress(None)
    for raw in iter_records(shards):
        try:
            if splits is not None and record_meta(raw).get("split") not in splits:
                continue
            images.append(record_image(raw))
            done.append(raw["__key__"])
        except Img2PromptError as exc:
            skipped.append(str(exc))
        if len(images) == batch_size:
            chunks.append(np.asarray(model.embed(images), dtype=np.float32))
            bar.update(len(images))
            images = []
    if images:
        chunks.append(np.asarray(model.embed(images), dtype=np.float32))
        bar.update(len(images))
    bar.close()
    return done, np.concatenate(chunks) if chunks else empty(), skipped


def _progress(total: int | None) -> tqdm:
    """The images-embedded bar on stderr: only on a terminal, and only in the main process (torchrun and
    accelerate launch set ``RANK``), so parallel ranks do not draw over each other."""
    main = os.environ.get("RANK", "0") == "0"
    return tqdm(total=total, desc="predict", unit="image", disable=None if main else True)


def image_ids(paths: Sequence[Path]) -> list[str]:
    """Kaggle image ids are file stems; two files with the same stem would collide in a submission."""
    ids = [p.stem for p in paths]
    seen: dict[str, Path] = {}
    for image_id, path in zip(ids, paths, strict=True):
        if image_id in seen:
            raise fail(path, f"image id {image_id!r} also used by {seen[image_id]} (ids are file stems)")
        seen[image_id] = path
    return ids


def run_predict(
    model_path: str,
    inputs: Sequence[str | Path],
    *,
    out: Path | None = None,
    kaggle: Path | None = None,
    tta: bool = False,
    batch_size: int = 32,
    splits: Sequence[str] | None = None,
) -> tuple[list[str], np.ndarray, list[str]]:
    """Predict every image under ``inputs`` (of ``splits``, for shards); each accelerate process takes a share,
    the main one writes.

    Without CUDA, accelerate treats a ``torchrun``/``accelerate launch`` rank as a lone process unless told
    it runs on the CPU, so every rank would predict (and write) everything: ``cpu=`` makes it a gloo group.
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from img2prompt.images import list_images
    from img2prompt.kaggle import write_submission
    from img2prompt.models.load import load_model
    from img2prompt.predictions import write_predictions
    from img2prompt.shards import find_shards, is_shards

    for target in (out, kaggle):
        if target is not None:
            check_output(target)
    state = PartialState(cpu=not torch.cuda.is_available())
    shard_inputs = [item for item in inputs if is_shards(item)]
    if shard_inputs and len(shard_inputs) != len(inputs):
        raise fail(shard_inputs[0], "give either shards or image files/folders to one predict, not both")
    if shard_inputs:
        work: list[Path] = [path for item in shard_inputs for path in find_shards(item)]
    else:
        work = list_images(list(inputs))
        image_ids(work)  # fail early on colliding ids
    model = load_model(model_path, tta=tta, device=str(state.device), batch_size=batch_size)
    with state.split_between_processes(work) as share:
        if shard_inputs:
            done, vectors, skipped = embed_shards(model, share, splits, batch_size)
        else:
            paths, vectors, skipped = embed_files(model, share, batch_size)
            done = [str(p) for p in paths]
    parts = gather_object([(done, vectors, skipped)]) if state.num_processes > 1 else [(done, vectors, skipped)]
    done = [p for part in parts for p in part[0]]
    vectors = np.concatenate([part[1] for part in parts])
    skipped = [s for part in parts for s in part[2]]
    ids = done if shard_inputs else image_ids([Path(p) for p in done])
    if not ids:
        what = f"samples of splits {list(splits or ['any'])} in {len(work)} shards" if shard_inputs \
            else f"{len(work)} images"
        raise Img2PromptError(f"predict: none of the {what} could be read" + (f" ({skipped[0]})" if skipped else ""))
    if state.is_main_process:
        if out is not None:
            write_predictions(ids, model.name, vectors, out)
        if kaggle is not None:
            write_submission(ids, vectors, kaggle)
    return ids, vectors, skipped

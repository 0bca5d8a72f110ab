"""The predict stage: images -> 384-d prompt embeddings, as a predictions table and a Kaggle submission.

Any model ``models.load.load_model`` accepts (checkpoint, ensemble YAML, baseline spec). Under
``accelerate launch`` each process embeds its share of the images and the main process writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from img2prompt.errors import Img2PromptError, fail
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
    for start in range(0, len(paths), batch_size):
        images, names = [], []
        for path in paths[start:start + batch_size]:
            try:
                images.append(load_image(path))
                names.append(path)
            except Img2PromptError as exc:
                skipped.append(str(exc))
        if images:
            chunks.append(np.asarray(model.embed(images), dtype=np.float32))
            done.extend(names)
    return done, np.concatenate(chunks) if chunks else empty(), skipped


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
) -> tuple[list[str], np.ndarray, list[str]]:
    """Predict every image under ``inputs``; each accelerate process takes a share, the main one writes.

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

    state = PartialState(cpu=not torch.cuda.is_available())
    paths = list_images(list(inputs))
    image_ids(paths)  # fail early on colliding ids
    model = load_model(model_path, tta=tta, device=str(state.device), batch_size=batch_size)
    with state.split_between_processes(paths) as share:
        done, vectors, skipped = embed_files(model, share, batch_size)
    parts = gather_object([(done, vectors, skipped)]) if state.num_processes > 1 else [(done, vectors, skipped)]
    done = [p for part in parts for p in part[0]]
    vectors = np.concatenate([part[1] for part in parts])
    skipped = [s for part in parts for s in part[2]]
    ids = image_ids(done)
    if not ids:
        raise Img2PromptError(f"predict: none of the {len(paths)} images could be read ({skipped[0]})")
    if state.is_main_process:
        if out is not None:
            write_predictions(ids, model.name, vectors, out)
        if kaggle is not None:
            write_submission(ids, vectors, kaggle)
    return ids, vectors, skipped

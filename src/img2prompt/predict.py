"""Batch prediction: images -> 384-d prompt embeddings, as a predictions table and a Kaggle submission.

Every model is an ``ImageEmbedder`` (a name and ``embed(images) -> (n, 384)`` unit vectors): a trained
checkpoint directory, an ensemble YAML (written by ``img2prompt ensemble``) or a baseline spec
(``mean:PROMPTS.parquet``, ``nearest:SHARDS``). ``load_model`` tells them apart.

Predictions table (Parquet): ``image_id`` (the file stem, as Kaggle ids are), ``model`` (the spec the
model was loaded from, so an ensemble can point back at it), ``embedding`` (float32[384]).
Under ``accelerate launch`` each process embeds its share of the images and the main process writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageOps

from img2prompt.errors import Img2PromptError, fail
from img2prompt.kaggle import EMBEDDING_DIM
from img2prompt.prompt_table import embedding_column, write_parquet

PREDICTION_COLUMNS = ("image_id", "model", "embedding")


@runtime_checkable
class ImageEmbedder(Protocol):
    """Anything that maps images to prompt embeddings: checkpoints, ensembles, baselines."""

    name: str

    def embed(self, images: list[Image.Image]) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


class CheckpointEmbedder:
    """A trained ``Regressor`` checkpoint, on the given device, embedding in fixed-size batches."""

    def __init__(self, path: str | Path, *, device: str = "cpu", batch_size: int = 32):
        from img2prompt.models.regressor import Regressor

        self.name = str(path)
        self.batch_size = batch_size
        self.model = Regressor.from_pretrained(path).to(device)

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        return self.model.embed(images, batch_size=self.batch_size)


class FlipTTA:
    """Test-time augmentation: the normalised mean of the embeddings of each image and its mirror image."""

    def __init__(self, inner: ImageEmbedder):
        self.inner = inner
        self.name = inner.name

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        mirrored = [ImageOps.mirror(im) for im in images]
        both = self.inner.embed(list(images) + mirrored)
        return normalise(both[: len(images)] + both[len(images):])


class Ensemble:
    """A weighted blend of member embeddings, renormalised; weights are scalars or 384-d vectors."""

    def __init__(self, members: Sequence[ImageEmbedder], weights: np.ndarray, name: str = "ensemble"):
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float32)
        if self.weights.shape not in ((len(self.members),), (len(self.members), EMBEDDING_DIM)):
            raise Img2PromptError(f"{name}: {len(self.members)} members need as many weights (or 384-d weights)")
        self.name = name

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        outputs = np.stack([member.embed(images) for member in self.members])  # (m, n, 384)
        weights = self.weights if self.weights.ndim == 2 else self.weights[:, None].repeat(EMBEDDING_DIM, 1)
        return normalise(np.einsum("mnd,md->nd", outputs, weights))


def load_model(path: str | Path, *, tta: bool = False, device: str = "cpu") -> ImageEmbedder:
    """A checkpoint directory, an ensemble YAML, or a baseline spec (``mean:...``, ``nearest:...``)."""
    from img2prompt.baselines import BASELINE_KINDS, load_baseline

    text = str(path)
    kind = text.partition(":")[0]
    target = Path(text)
    if kind in BASELINE_KINDS and not target.exists():
        model: ImageEmbedder = load_baseline(text)
    elif target.is_dir():
        model = CheckpointEmbedder(target, device=device)
    elif target.suffix in (".yaml", ".yml") and target.is_file():
        from img2prompt.ensemble import load_ensemble

        model = load_ensemble(target, device=device)
    else:
        raise fail(text, "not a checkpoint directory, ensemble YAML, or baseline (mean:TABLE, nearest:SHARDS)")
    return FlipTTA(model) if tta else model


def embed_files(
    model: ImageEmbedder, paths: Sequence[Path], batch_size: int = 32
) -> tuple[list[Path], np.ndarray, list[str]]:
    """Embed image files in batches; unreadable files are skipped and returned as one-line reasons."""
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
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, EMBEDDING_DIM), np.float32)
    return done, vectors, skipped


def image_ids(paths: Sequence[Path]) -> list[str]:
    """Kaggle image ids are file stems; two files with the same stem would collide in a submission."""
    ids = [p.stem for p in paths]
    seen: dict[str, Path] = {}
    for image_id, path in zip(ids, paths, strict=True):
        if image_id in seen:
            raise fail(path, f"image id {image_id!r} also used by {seen[image_id]} (ids are file stems)")
        seen[image_id] = path
    return ids


def write_predictions(ids: Sequence[str], model: str, embeddings: np.ndarray, path: str | Path) -> Path:
    """Write a predictions table atomically."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.shape != (len(ids), EMBEDDING_DIM):
        raise ValueError(f"expected embeddings of shape ({len(ids)}, {EMBEDDING_DIM}), got {embeddings.shape}")
    table = pa.table({
        "image_id": pa.array(list(ids), pa.string()),
        "model": pa.array([model] * len(ids), pa.string()),
        "embedding": embedding_column(embeddings),
    })
    return write_parquet(table, path)


def read_predictions(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a predictions table (Parquet) or a Kaggle submission CSV (model = the file name)."""
    from img2prompt.kaggle import read_submission

    path = Path(path)
    if path.suffix == ".csv":
        ids, vectors = read_submission(path)
        return pd.DataFrame({"image_id": ids, "model": path.name}), vectors
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise fail(path, "predictions file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise fail(path, f"not a readable Parquet predictions table ({exc})") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in table.column_names]
    if missing:
        raise fail(path, f"missing column(s) {', '.join(missing)}")
    column = table.column("embedding").combine_chunks()
    try:
        vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, EMBEDDING_DIM)
    except ValueError:
        raise fail(path, f"embedding column is not {EMBEDDING_DIM}-d") from None
    frame = table.select(["image_id", "model"]).to_pandas()
    if len(vectors) != len(frame):
        raise fail(path, f"embedding column is not {EMBEDDING_DIM}-d")
    if not np.isfinite(vectors).all():
        raise fail(path, f"row {int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])}: non-finite embedding")
    return frame, vectors.astype(np.float32, copy=False)


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

    state = PartialState(cpu=not torch.cuda.is_available())
    paths = list_images(list(inputs))
    image_ids(paths)  # fail early on colliding ids
    model = load_model(model_path, tta=tta, device=str(state.device))
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

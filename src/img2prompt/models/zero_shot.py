"""The zero-shot model kind ``clip:MODEL/PRETRAINED``: a prompt embedding with no training at all.

It embeds the image with an open_clip model, ranks the bank's prompts by CLIP text-image similarity, and returns
the similarity-weighted mean of the top ``k`` prompts' all-MiniLM-L6-v2 embeddings (weights: a softmax of the
similarities over ``temperature``). That is CLIP Interrogator's idea pointed at the competition's metric: the
answer lives in the target space, so it scores, ensembles and decodes like any trained model.

The bank's CLIP text embeddings are computed once and cached beside the bank
(``<bank>.clip/<model>__<tag>__<key>.npy``, the key a hash of the bank's prompts and of a weights file's size and
time), so a changed bank or weights file is embedded again. Only
the bank's ``train`` rows are used when it has splits: a val/test prompt in the bank would find itself.

The recipe's, ``clip:ViT-H-14/laion2b_s32b_b79k``, is the OpenCLIP ViT-H/14 whose text tower conditions Stable
Diffusion 2 (what CLIP Interrogator uses for SD 2); it needs a GPU to be quick and its weights (3.9 GB) come from the
Hub once (``models.clip_weights``: ``img2prompt fetch`` gets them ahead of time).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import atomic_path
from img2prompt.models.clip_weights import local_weights
from img2prompt.space import empty, normalise

TEXT_BATCH = 256


class ZeroShotCLIP:
    """Image -> CLIP image embedding -> top-k bank prompts by CLIP similarity -> their weighted MiniLM mean."""

    def __init__(self, model_name: str, pretrained: str | None, bank: str | Path, *, k: int = 32,
                 temperature: float = 0.01, device: str = "cpu", batch_size: int = 32,
                 model_kwargs: dict[str, Any] | None = None, name: str | None = None):
        """``pretrained`` None builds random weights (``model_kwargs`` can shrink the model: the tests' tiny twin)."""
        import open_clip
        import torch

        if k < 1 or temperature <= 0:
            raise Img2PromptError(f"{name or model_name}: k must be >= 1 and temperature > 0")
        self.name = name or f"clip:{model_name}/{pretrained}"
        self.sources: tuple[str, ...] = ()  # CLIP's own pretraining, not a prompt source of ours
        self.k, self.temperature, self.batch_size, self.device = k, temperature, batch_size, device
        self.prompts, self.targets = _train_rows(bank)  # a wrong bank fails before any download
        weights, tag_kwargs = (None, {}) if pretrained is None else local_weights(model_name, pretrained, self.name)
        try:
            model, _, self.preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=weights, device=device, **tag_kwargs, **(model_kwargs or {}))
        except (RuntimeError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise fail(self.name, f"cannot load the open_clip model ({first})") from None
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self._torch = torch
        self.text = self._bank_text_embeddings(Path(bank), model_name, pretrained)

    def _bank_text_embeddings(self, bank: Path, model_name: str, pretrained: str | None) -> np.ndarray:
        """The bank's CLIP text embeddings, read from the cache beside the bank or computed once and cached
        (random weights are never cached: they differ from run to run)."""
        from tqdm.auto import tqdm

        cache = None if pretrained is None else _cache_path(bank, model_name, pretrained, self.prompts)
        if cache is not None and cache.exists():
            return np.load(cache, mmap_mode="r")
        chunks = []
        with self._torch.inference_mode():
            for start in tqdm(range(0, len(self.prompts), TEXT_BATCH), desc=f"CLIP text of the bank (once; {cache})",
                              unit="batch", disable=len(self.prompts) <= TEXT_BATCH):
                tokens = self.tokenizer(self.prompts[start:start + TEXT_BATCH]).to(self.device)
                chunks.append(self.model.encode_text(tokens).float().cpu().numpy())
        vectors = normalise(np.concatenate(chunks))
        if cache is not None:
            with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
                np.save(handle, vectors, allow_pickle=False)
        return vectors

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return empty()
        out = []
        with self._torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                pixels = self._torch.stack([self.preprocess(im) for im in images[start:start + self.batch_size]])
                features = self.model.encode_image(pixels.to(self.device)).float().cpu().numpy()
                out.append(self._blend(normalise(features)))
        return np.concatenate(out)

    def _blend(self, image_vectors: np.ndarray) -> np.ndarray:
        """Softmax-weighted mean of the targets of each image's ``k`` most similar bank prompts."""
        similarity = image_vectors @ np.asarray(self.text).T  # (n, bank)
        k = min(self.k, similarity.shape[1])
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        scores = np.take_along_axis(similarity, top, axis=1) / self.temperature
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        return normalise(np.einsum("nk,nkd->nd", weights, self.targets[top]))


def _cache_path(bank: Path, model_name: str, pretrained: str, prompts: list[str]) -> Path:
    """``<bank>.clip/<model>__<tag>__<key>.npy``: the key covers the bank's prompts and, for a weights file,
    its size and time, so a changed bank or file is embedded again."""
    weights = Path(pretrained)
    stamp = f"{weights.stat().st_size}:{weights.stat().st_mtime_ns}" if weights.is_file() else ""
    key = hashlib.sha256("\n".join([stamp, *prompts]).encode()).hexdigest()[:16]
    tag = weights.stem if weights.is_file() else pretrained
    return bank.with_name(bank.name + ".clip") / f"{model_name}__{tag}__{key}.npy"


def _train_rows(bank: str | Path) -> tuple[list[str], np.ndarray]:
    """The bank's train prompts and their targets (every row when the table has no train split)."""
    from img2prompt.prompt_table import read_table

    frame, targets = read_table(bank, columns=["prompt", "split", "embedding"])
    train = (frame.split == "train").to_numpy()
    if train.any():
        frame, targets = frame[train], targets[train]
    if not len(frame):
        raise fail(bank, "the prompt table is empty: a zero-shot model needs a bank of prompts")
    return list(frame.prompt), np.ascontiguousarray(targets, dtype=np.float32)

"""The open_clip weights of a zero-shot model ``clip:MODEL/TAG``: which file on the Hub, whether it is in the cache,
how big it is, and fetching it through open_clip's own download.

Left to itself, open_clip downloads a tag's weights while it builds the model. With the Hub unreachable that took
51 s of huggingface_hub retries for ``clip:ViT-B-32/openai`` (each retry logged twice, once through the root logger
open_clip configures), offline it named no command and no size, and a mistyped tag surfaced as an ``ERROR:root``
line before a generic message. Here the model and tag are checked first (a wrong tag lists the valid ones), the
cache is read without the network, and a download asks the Hub once, without retries, for the file and its size
before open_clip fetches it. The model is then built from the cached file with the tag's preprocessing and
activation (``open_clip_kwargs``), so building it never touches the network.
"""

from __future__ import annotations

import logging
import posixpath
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from img2prompt.config import did_you_mean
from img2prompt.errors import fail
from img2prompt.files import human_size
from img2prompt.models.hub import hub_failure, not_downloaded, offline

BYTES_PER_PARAMETER = 4  # open_clip's hub weights are float32


@dataclass(frozen=True)
class ClipWeights:
    """A pretrained tag's weights: its Hub repo and candidate files (safetensors first, as open_clip prefers)."""

    spec: str  # the model spec a user typed, for messages
    model: str
    tag: str
    repo: str
    files: tuple[str, ...]
    config: dict[str, Any]  # open_clip's pretrained config of the tag

    @classmethod
    def of(cls, model: str, tag: str, spec: str) -> ClipWeights:
        """Check the model and the tag; an unknown one is a line naming the valid choices."""
        import open_clip
        from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives

        if model not in open_clip.list_models():
            raise fail(spec, f"open_clip has no model {model!r}{did_you_mean(model, open_clip.list_models())}")
        tags = open_clip.list_pretrained_tags_by_model(model)
        config = open_clip.get_pretrained_cfg(model, tag)
        if not config:
            valid = f"its tags: {', '.join(tags)}" if tags else "open_clip has no pretrained weights for it"
            raise fail(spec, f"{model} has no pretrained tag {tag!r} ({valid}; or give a weights file)")
        repo, name = posixpath.split(config["hf_hub"])  # 'org/repo/' (its default file) or 'org/repo/file'
        name = name or HF_WEIGHTS_NAME
        return cls(spec, model, tag, repo, (*_get_safe_alternatives(name), name), config)

    def cached(self) -> Path | None:
        """The weights file in the Hugging Face cache, found without the network, or None."""
        from huggingface_hub import try_to_load_from_cache

        for name in self.files:
            found = try_to_load_from_cache(self.repo, name)
            if isinstance(found, str):
                return Path(found)
        return None

    @property
    def fetch(self) -> str:
        """The spec ``img2prompt fetch`` takes for these weights (without the zero-shot model's bank)."""
        return f"clip:{self.model}/{self.tag}"

    @property
    def what(self) -> str:
        return f"the open_clip weights {self.repo}"

    def estimated_size(self) -> str:
        """``~3.9 GB``: the model's parameter count (built on the meta device, no memory) times 4 bytes."""
        import open_clip
        import torch

        with _root_logger_silent(), torch.device("meta"):
            model = open_clip.create_model(self.model, device="meta")
        return f"~{human_size(BYTES_PER_PARAMETER * sum(p.numel() for p in model.parameters()))}"

    def remote(self) -> tuple[str, int | None]:
        """The file the Hub has (the first candidate it holds) and its size: one request each, no retries."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        for name in self.files:
            try:
                return name, get_hf_file_metadata(hf_hub_url(self.repo, name)).size
            except Exception as exc:
                if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError) and (
                        name != self.files[-1]):
                    continue  # the Hub holds the next candidate
                raise hub_failure(self.spec, self.what, exc, self.estimated_size(), fetch=self.fetch) from None
        raise AssertionError  # the last candidate returns or raises

    def download(self) -> Path:
        """Fetch the weights with open_clip's own download (huggingface_hub's progress bar); returns the file."""
        import open_clip

        try:
            return Path(open_clip.download_pretrained(self.config))
        except Exception as exc:
            raise hub_failure(self.spec, self.what, exc, fetch=self.fetch) from None

    def open_clip_kwargs(self) -> dict[str, Any]:
        """What open_clip applies for the tag when it loads by tag: its normalisation, resize and activation."""
        config = self.config
        return {"image_mean": config.get("mean"), "image_std": config.get("std"),
                "image_interpolation": config.get("interpolation"), "image_resize_mode": config.get("resize_mode"),
                "force_quick_gelu": bool(config.get("quick_gelu", False))}


def local_weights(model: str, tag: str, spec: str) -> tuple[str, dict[str, Any]]:
    """A weights file for ``open_clip.create_model_and_transforms`` and the keyword arguments of its tag. A file path
    is used as is; a tag's file comes from the cache, or is downloaded first (saying its size), or, offline or with
    the Hub unreachable, is a one-line error naming ``img2prompt fetch``."""
    if Path(tag).is_file():
        return tag, {}
    weights = ClipWeights.of(model, tag, spec)
    found = weights.cached()
    if found is None:
        if offline():
            raise not_downloaded(spec, weights.what, weights.estimated_size(), fetch=weights.fetch)
        name, size = weights.remote()
        print(f"{spec}: downloading {weights.repo}/{name} ({human_size(size) if size else 'size unknown'}) once "
              "into the Hugging Face cache", file=sys.stderr, flush=True)
        found = weights.download()
    return str(found), weights.open_clip_kwargs()


@contextmanager
def _root_logger_silent() -> Iterator[None]:
    """open_clip reports through the root logger's functions (``logging.warning``), which install a stderr handler
    when the root has none: while it builds a model without weights on purpose, its records go nowhere."""
    root = logging.getLogger()
    null, level = logging.NullHandler(), root.level
    root.addHandler(null)
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.removeHandler(null)
        root.setLevel(level)

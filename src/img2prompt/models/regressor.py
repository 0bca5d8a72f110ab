"""``Regressor``: image -> 384-d unit vector in the prompt-embedding space, saved as a checkpoint directory.

A checkpoint directory (DESIGN.md contract 3) holds ``config.yaml`` (``train:`` section, whose ``model:``
block rebuilds the architecture), ``model.safetensors`` (merged weights: LoRA is folded in, so loading
never needs peft), ``metrics.json`` and, for LoRA runs, ``adapter/`` (the peft adapter on its own).
Loading never unpickles anything and never downloads weights: the architecture is built random-init and
the saved tensors are loaded into it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from img2prompt import space
from img2prompt.config import RESOLVED_NAME, StrictModel, read_yaml, validate
from img2prompt.errors import fail
from img2prompt.files import atomic_path, write_text_atomic
from img2prompt.models.backbones import Backbone, build_backbone
from img2prompt.models.heads import EmbeddingHead

WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.json"
ADAPTER_DIR = "adapter"


class ModelConfig(StrictModel):
    """The architecture: which backbone, at what resolution, with which head."""

    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    tiny: bool = False
    image_size: int | None = None  # None: the backbone's native resolution
    fc_dim: int = 0  # > 0 adds the large FC block (Linear -> BN -> act -> Linear)
    activation: Literal["gelu", "relu", "silu"] = "gelu"
    dropout: float = 0.0
    pool: Literal["mean", "attention"] = "mean"  # for token outputs (BLIP-2 Q-Former)


def build_transform(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Callable:
    """Evaluation preprocessing: shorter side to ``image_size`` (bicubic), centre crop, normalise."""
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


class Regressor(nn.Module):
    """Backbone + ``EmbeddingHead``; ``forward(pixels)`` returns L2-normalised (n, 384) embeddings."""

    def __init__(self, config: ModelConfig, *, pretrained: bool | None = None):
        super().__init__()
        self.config = config
        use_pretrained = config.pretrained if pretrained is None else pretrained
        spec: Backbone = build_backbone(config.backbone, pretrained=use_pretrained, tiny=config.tiny,
                                        image_size=config.image_size)
        self.spec = spec
        self.backbone = spec.module
        self.head = EmbeddingHead(spec.feature_dim, fc_dim=config.fc_dim, activation=config.activation,
                                  dropout=config.dropout, pool=config.pool)
        self.image_size = spec.image_size
        self.image_transform = build_transform(spec.image_size, spec.mean, spec.std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pixels))

    @torch.no_grad()
    def embed(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embed PIL images in eval mode: (n, 384) float32 unit vectors."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            batch = torch.stack([self.image_transform(im.convert("RGB")) for im in chunk])
            out.append(self(batch.to(device)).float().cpu())
        self.train(was_training)
        if not out:
            return space.empty()
        return torch.cat(out).numpy().astype(np.float32)

    # ------------------------------------------------------------------ checkpoints

    def merged(self) -> Regressor:
        """This model with any LoRA adapter folded into the base weights (a copy; self is untouched)."""
        from peft import PeftModel

        if not isinstance(self.backbone, PeftModel):
            return self
        plain = copy.deepcopy(self)
        plain.backbone = plain.backbone.merge_and_unload()
        plain.spec.module = plain.backbone
        return plain

    def save_pretrained(self, path: str | Path, *, metrics: dict[str, Any] | None = None,
                        train_config: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint directory; each file is written to a temp name and renamed into place."""
        from peft import PeftModel
        from safetensors.torch import save_model

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        section = {**(train_config or {}), "model": self.config.model_dump(mode="json")}
        write_text_atomic(out / RESOLVED_NAME, yaml.safe_dump({"train": section}, sort_keys=False))
        with atomic_path(out / WEIGHTS_NAME) as tmp:
            save_model(self.merged(), str(tmp))
        if isinstance(self.backbone, PeftModel):
            self.backbone.save_pretrained(str(out / ADAPTER_DIR))
        if metrics is not None or not (out / METRICS_NAME).exists():
            write_text_atomic(out / METRICS_NAME, json.dumps(metrics or {}, indent=2, sort_keys=True))
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Regressor:
        """Rebuild a saved model in eval mode; a missing or corrupt checkpoint is a one-line error."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        root = Path(path)
        if not root.is_dir():
            raise fail(root, "not a checkpoint directory (expected config.yaml and model.safetensors)")
        config = _read_model_config(root / RESOLVED_NAME)
        weights = root / WEIGHTS_NAME
        if not weights.exists():
            raise fail(weights, "missing: the checkpoint has no weights")
        model = cls(config, pretrained=False)
        try:
            load_model(model, str(weights), strict=True)
        except (SafetensorError, OSError) as exc:
            raise fail(weights, f"corrupt weights file ({exc})") from None
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise fail(weights, f"weights do not match the config's model ({first})") from None
        return model.eval()


def _read_model_config(path: Path) -> ModelConfig:
    if not path.exists():
        raise fail(path, "missing: the checkpoint has no config")
    data = read_yaml(path)
    section = data.get("train")
    if not isinstance(section, dict) or not isinstance(section.get("model"), dict):
        raise fail(path, "no train.model section: not a regressor checkpoint config")
    return validate(ModelConfig, section["model"], path, "train.model")


def load_metrics(path: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` of a checkpoint directory (empty when absent)."""
    target = Path(path) / METRICS_NAME
    if not target.exists():
        return {}
    try:
        return json.loads(target.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise fail(target, f"not JSON ({exc})") from None

"""``Regressor``: image -> 384-d unit vector in the prompt-embedding space, saved as a checkpoint directory.

A checkpoint directory (DESIGN.md contract 3, ``models.checkpoint``) holds ``config.json`` (the model and its
preprocessing), ``config.yaml`` (the training arguments), ``model.safetensors`` (merged weights: LoRA is folded in,
so loading never needs peft), ``metrics.json`` and, for LoRA runs, ``adapter/`` (the peft adapter on its own; under
LoRA on the bottom blocks the blocks above trained too, so only ``model.safetensors`` holds the whole model).
Loading never unpickles anything and never downloads weights: the architecture is built random-init and
the saved tensors are loaded into it.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from PIL import Image
from pydantic import Field
from torch import nn

from img2prompt import space
from img2prompt.config import RESOLVED_NAME, StrictModel, validate
from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import atomic_path, write_text_atomic
from img2prompt.images import MAX_SIDE
from img2prompt.models.backbones import BackboneSpec, build_backbone
from img2prompt.models.checkpoint import ADAPTER_DIR, METRICS_NAME, WEIGHTS_NAME, Checkpoint, write_model_config
from img2prompt.models.heads import EmbeddingHead


class ModelConfig(StrictModel):
    """The architecture: which backbone, at what resolution, with which head."""

    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    tiny: bool = False
    image_size: int | None = Field(None, ge=16, le=MAX_SIDE)  # None: the backbone's native resolution
    fc_dim: int = Field(0, ge=0)  # > 0 adds the large FC block (Linear -> BN -> act -> Linear)
    activation: Literal["gelu", "relu", "silu"] = "gelu"
    dropout: float = Field(0.0, ge=0, lt=1)
    pool: Literal["mean", "attention"] = "mean"  # for token outputs (BLIP-2 Q-Former)


@dataclass(frozen=True)
class EvalTransform:
    """Evaluation preprocessing: shorter side to ``size`` (bicubic), centre crop, to [0, 1], normalise.

    Bit-identical to torchvision's ``Resize(size, BICUBIC) -> CenterCrop(size) -> ToTensor -> Normalize`` on RGB
    (the training transform without augmentation), in PIL and torch alone: importing torchvision costs ~1.5 s of
    every start-up, and prediction needs nothing else from it. Other modes are converted to RGB first.
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = image if image.mode == "RGB" else image.convert("RGB")
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_long = int(self.size * long / short)  # torchvision's rounding of the longer side
        new_size = (self.size, new_long) if width <= height else (new_long, self.size)
        if new_size != image.size:
            image = image.resize(new_size, Image.Resampling.BICUBIC)
        left = round((new_size[0] - self.size) / 2)  # banker's rounding, as torchvision
        top = round((new_size[1] - self.size) / 2)
        image = image.crop((left, top, left + self.size, top + self.size))
        pixels = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1).contiguous().float().div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return pixels.sub_(mean).div_(std)


def build_transform(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> EvalTransform:
    """The evaluation preprocessing of a backbone: resize the shorter side, centre crop, normalise."""
    return EvalTransform(image_size, tuple(mean), tuple(std))


class Regressor(nn.Module):
    """Backbone + ``EmbeddingHead``; ``forward(pixels)`` returns L2-normalised (n, 384) embeddings.

    ``self.backbone`` is the one place the backbone module lives (a peft ``PeftModel`` around it once
    ``add_lora`` ran); ``self.spec`` only describes it, so wrapping, merging or copying never leaves two
    references to keep in sync.
    """

    backbone: nn.Module
    spec: BackboneSpec

    def __init__(self, config: ModelConfig, *, pretrained: bool | None = None):
        super().__init__()
        self.config = config
        use_pretrained = config.pretrained if pretrained is None else pretrained
        self.backbone, self.spec = build_backbone(config.backbone, pretrained=use_pretrained, tiny=config.tiny,
                                                  image_size=config.image_size)
        self.head = EmbeddingHead(self.spec.feature_dim, fc_dim=config.fc_dim, activation=config.activation,
                                  dropout=config.dropout, pool=config.pool)
        self.image_size = self.spec.image_size
        self.image_transform = build_transform(self.spec.image_size, self.spec.mean, self.spec.std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pixels))

    # ------------------------------------------------------------------ the backbone

    @property
    def has_lora(self) -> bool:
        peft = sys.modules.get("peft")  # a backbone is a PeftModel only once peft was imported to wrap it
        return peft is not None and isinstance(self.backbone, peft.PeftModel)

    def base_backbone(self) -> nn.Module:
        """The backbone network itself: under LoRA, the module peft wraps (its layers now hold the adapters)."""
        return self.backbone.get_base_model() if self.has_lora else self.backbone

    def blocks(self) -> list[nn.Module]:
        """Backbone blocks in depth order (stem first), for layer-wise LR decay and freezing early blocks."""
        return self.spec.blocks(self.base_backbone())

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the backbone's block activations in the backward pass: less memory, same gradients."""
        self.base_backbone().set_grad_checkpointing(enable)

    def add_lora(self, rank: int, alpha: int, dropout: float = 0.0, blocks: int | None = None) -> None:
        """Wrap the backbone with peft LoRA on the attention/MLP projections (``spec.lora_targets``) of its bottom
        ``blocks`` blocks (stem first, as ``blocks()`` lists them), whose own weights freeze; the blocks above and
        any backbone parameter outside every block train directly, as the head does. ``blocks=None``: adapters on
        every block and nothing else of the backbone trains (plain LoRA)."""
        from peft import LoraConfig, get_peft_model

        bottom = self.blocks()[:blocks]
        inside = {id(module) for block in bottom for module in block.modules()}
        pattern = re.compile(self.spec.lora_targets)
        targets = [name for name, module in self.backbone.named_modules()
                   if pattern.fullmatch(name) and id(module) in inside]
        if not targets:
            raise Img2PromptError(f"finetune.lora_blocks={blocks}: the bottom {blocks} blocks of "
                                  f"{self.config.backbone!r} hold no LoRA target ({self.spec.lora_targets})")
        # Named before wrapping: peft's nn.MultiheadAttention adapter re-registers the parameters it wraps
        # (docs/STACK.md, pitfall 13).
        frozen = {id(param) for block in bottom for param in block.parameters()}
        above = {name for name, param in self.backbone.named_parameters() if id(param) not in frozen}
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
        self.backbone = get_peft_model(self.backbone, config)
        if blocks is not None:  # peft froze the whole backbone: the part above the adapted blocks trains again
            for name, param in self.base_backbone().named_parameters():
                if name in above:
                    param.requires_grad_(True)

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
        if not self.has_lora:
            return self
        plain = copy.deepcopy(self)
        plain.backbone = plain.backbone.merge_and_unload()
        return plain

    def save_pretrained(self, path: str | Path, *, metrics: dict[str, Any] | None = None,
                        train_config: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint directory; each file is written to a temp name and renamed into place."""
        from safetensors.torch import save_model

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        model = self.config.model_dump(mode="json")
        write_model_config(out, model, {"image_size": self.image_size, "resize": "shorter side, bicubic",
                                        "crop": "centre", "mean": list(self.spec.mean), "std": list(self.spec.std)})
        section = {**(train_config or {}), "model": model}
        write_text_atomic(out / RESOLVED_NAME, yaml.safe_dump({"train": section}, sort_keys=False))
        with atomic_path(out / WEIGHTS_NAME) as tmp:
            save_model(self.merged(), str(tmp))
        if self.has_lora:
            self.backbone.save_pretrained(str(out / ADAPTER_DIR))
        if metrics is not None or not (out / METRICS_NAME).exists():
            write_text_atomic(out / METRICS_NAME, json.dumps(metrics or {}, indent=2, sort_keys=True))
        return out

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path | Checkpoint) -> Regressor:
        """Rebuild a saved model in eval mode; a missing or corrupt checkpoint is a one-line error."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        found = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.read(checkpoint)
        model = cls(validate(ModelConfig, found.model, found.path, "model"), pretrained=False)
        try:
            load_model(model, str(found.weights), strict=True)
        except (SafetensorError, OSError) as exc:
            raise fail(found.weights, f"corrupt weights file ({exc})") from None
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise fail(found.weights, f"weights do not match the config's model ({first})") from None
        return model.eval()

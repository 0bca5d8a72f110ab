"""Every shipped train config validates, names a registered backbone, and stage 2 starts from stage 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from img2prompt.models.backbones import REGISTRY
from img2prompt.sections import load_section
from img2prompt.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "train"
STAGED = ["vit_l_14_336", "convnext_xxlarge", "blip2_qformer", "efficientnet_lite2", "plus/vit_l_14_336",
          "plus/convnext_xxlarge", "plus/blip2_qformer", "plus/eva02_large_336"]


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_is_valid(path: Path) -> None:
    config = load_section(path, "train", TrainConfig)
    assert config.model.backbone in REGISTRY and config.data.shards


@pytest.mark.parametrize("name", STAGED)
def test_two_stages_per_real_backbone_with_its_pretrained_weights(name: str) -> None:
    stage1 = load_section(CONFIGS / f"{name}_stage1.yaml", "train", TrainConfig)
    stage2 = load_section(CONFIGS / f"{name}_stage2.yaml", "train", TrainConfig)
    assert stage1.model == stage2.model and stage1.model.pretrained and not stage1.model.tiny
    assert stage1.precision == "bf16"
    assert stage2.init_from == stage1.out and stage1.init_from is None


def test_cpu_quickstart_uses_efficientnet_lite0_with_real_weights() -> None:
    config = load_section(CONFIGS / "cpu_quickstart.yaml", "train", TrainConfig)
    assert config.model.backbone == "efficientnet_lite0" and config.model.pretrained
    assert config.precision == "no" and config.data.num_workers <= 1

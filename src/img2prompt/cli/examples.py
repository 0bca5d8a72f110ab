"""Where each verb sits in ``--help`` (``ORDER``: its panel, in pipeline order) and the examples its help ends with
(``EXAMPLES``: a test checks that each ``--set`` in them is a valid config key)."""

from __future__ import annotations

STAGES = "Stages, in pipeline order"
WHOLE = "The whole pipeline"
CHECKS = "Checks"
# Verb -> its --help panel, in the order --help lists them.
ORDER = {
    "download": STAGES, "write-prompts": STAGES, "embed": STAGES, "curate": STAGES, "generate": STAGES,
    "train": STAGES, "predict": STAGES, "ensemble": STAGES, "evaluate": STAGES, "decode": STAGES,
    "interrogate": STAGES, "serve": STAGES, "push": STAGES, "recipe": WHOLE, "quickstart": WHOLE,
    "validate-submission": CHECKS,
}
EXAMPLES = {
    "download": [
        "img2prompt download --dry-run",
        "img2prompt download coco vizwiz --to data",
        "img2prompt download coyo --parts 32 -c configs/download/recipe.yaml \\",
        "    --set download.progress=false",
    ],
    "write-prompts": [
        "img2prompt write-prompts configs/write_prompts/recipe.yaml",
        "img2prompt write-prompts configs/write_prompts/recipe.yaml \\",
        "    --set write_prompts.count=20000 --set write_prompts.out=data/llm/x.jsonl",
    ],
    "embed": [
        "img2prompt embed prompts.csv --kaggle submission.csv",
        "img2prompt embed prompts.csv --out prompts.parquet --backend int8",
    ],
    "curate": [
        "img2prompt curate configs/curate/shared_data.yaml",
        "img2prompt curate configs/curate/shared_data.yaml \\",
        "    --set curate.dedup.threshold=0.85 --set curate.out=runs/curate2",
    ],
    "generate": [
        "img2prompt generate configs/generate/scenes.yaml --set generate.size=256",
        "torchrun --nproc-per-node 8 -m img2prompt generate \\",
        "    configs/generate/sd2_hq.yaml --set generate.diffusion.steps=25",
    ],
    "train": [
        "img2prompt train configs/train/cpu_quickstart.yaml --set train.optim.lr=1e-4",
        "accelerate launch --config_file configs/accelerate/fsdp_vit_l_14_336.yaml \\",
        "    -m img2prompt train configs/train/vit_l_14_336_stage1.yaml \\",
        "    --set train.data.batch_size=16 --set train.optim.grad_accum=4",
    ],
    "predict": [
        "img2prompt predict runs/train/lite0 images/ --kaggle submission.csv",
        "img2prompt predict ensemble.yaml shards/ --split test --out test.parquet",
        "img2prompt predict mean:prompts.parquet images/ --out mean.parquet",
    ],
    "ensemble": [
        "img2prompt ensemble vit-val.parquet eva-val.parquet --truth shards/ \\",
        "    --out ensemble.yaml",
    ],
    "evaluate": [
        "img2prompt evaluate vit-test.parquet eva-test.parquet --truth shards/ \\",
        "    --out report/ --images shards/ --bank bank.parquet \\",
        "    --set decode.mode=best",
    ],
    "decode": [
        "img2prompt decode bank.parquet --text 'a castle on a hill at sunset'",
        "img2prompt decode bank.parquet --predictions test.parquet \\",
        "    --out decoded.csv --mode best --set decode.modes.best.beam=8",
    ],
    "serve": [
        "img2prompt serve runs/train/lite0 --bank bank.parquet --port 8000",
        "img2prompt serve ensemble.yaml -c configs/serve/gpu.yaml \\",
        "    --set serve.batch_size=32",
    ],
    "interrogate": [
        "img2prompt interrogate photo.png --bank runs/quickstart/bank/prompts.parquet",
        "img2prompt interrogate images/ --model hf-hub:me/vit-l --bank bank.parquet \\",
        "    --mode best --json --set decode.cache_dir=runs/cache",
    ],
    "push": [
        "img2prompt push runs/recipe/train/vit_l_14_336_stage2 me/img2prompt-vit-l",
        "img2prompt push runs/train/lite0 me/lite0 --dry-run staged/",
    ],
    "recipe": [
        "img2prompt recipe configs/recipe/full.yaml --dry-run --gpus 8",
        "img2prompt recipe configs/recipe/full.yaml --gpus 8 \\",
        "    --set recipe.out=/data/recipe --set train.data.batch_size=32",
    ],
    "quickstart": [
        "img2prompt quickstart",
        "img2prompt quickstart --set recipe.out=runs/qs2 --set recipe.report_grid=12 \\",
        "    --set curate.sources.0.count=300",
    ],
    "validate-submission": [
        "img2prompt validate-submission submission.csv",
        "img2prompt validate-submission submission.csv --prompts prompts.csv",
    ],
}

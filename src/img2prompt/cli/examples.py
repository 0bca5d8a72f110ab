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
    "interrogate": STAGES, "serve": STAGES, "push": STAGES, "fetch": STAGES, "recipe": WHOLE, "quickstart": WHOLE,
    "validate-submission": CHECKS,
}
# Each runs as written in a clone after `make quickstart`, offline (it reads runs/quickstart/, the example images
# and prompts in examples/, or the output of the verb's earlier example), or says what else it needs.
EXAMPLES = {
    "download": [
        "img2prompt download --dry-run        # each file and its size; fetches nothing",
        "img2prompt download coco vizwiz      # needs the network: ~300 MB",
        "img2prompt download coyo --parts 32 -c configs/download/recipe.yaml \\",
        "    --set download.progress=false    # needs the Hub: ~34 GB",
    ],
    "write-prompts": [
        "img2prompt write-prompts configs/write_prompts/recipe.yaml \\",
        "    --set write_prompts.count=20000 --set write_prompts.out=data/llm/x.jsonl",
        "# needs a GPU and the Hub (Qwen2.5-7B-Instruct, ~15 GB)",
    ],
    "embed": [
        "img2prompt embed examples/prompts.csv --kaggle truth.csv",
        "img2prompt embed examples/prompts.csv --out prompts.parquet --backend int8",
    ],
    "curate": [
        "img2prompt curate configs/curate/quickstart.yaml --set curate.out=runs/curate",
        "img2prompt curate configs/curate/recipe.yaml   # needs img2prompt download",
    ],
    "generate": [
        "img2prompt generate configs/generate/scenes.yaml --set generate.size=96",
        "torchrun --nproc-per-node 8 -m img2prompt generate \\",
        "    configs/generate/sd2_hq.yaml --set generate.diffusion.steps=25",
        "# the second needs 8 GPUs and the Hub (Stable Diffusion 2, ~5 GB)",
    ],
    "train": [
        "img2prompt train configs/train/cpu_quickstart.yaml \\",
        "    --set train.optim.lr=1e-4 --set train.out=runs/train/lite0",
        "accelerate launch --config_file configs/accelerate/fsdp_vit_l_14_336.yaml \\",
        "    -m img2prompt train configs/train/vit_l_14_336_stage1.yaml \\",
        "    --set train.data.batch_size=16 --set train.optim.grad_accum=4",
        "# the second needs GPUs, the Hub (ViT-L/14-336, ~1.7 GB) and the LQ shards",
    ],
    "predict": [
        "img2prompt predict runs/quickstart/ensemble.yaml examples/ --kaggle sub.csv",
        "img2prompt predict runs/quickstart/models/lite0_full_ft \\",
        "    runs/quickstart/shards --split test --out test.parquet",
        "img2prompt predict mean:runs/quickstart/prompts/prompts.parquet examples/ \\",
        "    --out mean.parquet",
    ],
    "ensemble": [
        "img2prompt ensemble runs/quickstart/predictions/lite0_*-val.parquet \\",
        "    --truth runs/quickstart/shards --out ensemble.yaml",
    ],
    "evaluate": [
        "img2prompt evaluate runs/quickstart/predictions/*-test.parquet \\",
        "    --truth runs/quickstart/shards --out report/ \\",
        "    --bank runs/quickstart/bank/prompts.parquet --set decode.mode=best",
    ],
    "decode": [
        "img2prompt decode runs/quickstart/bank/prompts.parquet --text 'a red castle'",
        "img2prompt decode runs/quickstart/bank/prompts.parquet \\",
        "    --predictions runs/quickstart/predictions/ensemble-test.parquet \\",
        "    --out decoded.csv --mode best --set decode.modes.best.beam=8",
    ],
    "interrogate": [
        "img2prompt interrogate examples/chickens.webp \\",
        "    --model runs/quickstart/ensemble.yaml \\",
        "    --bank runs/quickstart/bank/prompts.parquet",
        "img2prompt interrogate examples/ --model hf-hub:ORG/NAME --mode best \\",
        "    --json --set decode.cache_dir=runs/cache",
        "# the second: a model pushed with its bank; the Hub once (or img2prompt fetch)",
    ],
    "serve": [
        "img2prompt serve runs/quickstart/ensemble.yaml \\",
        "    --bank runs/quickstart/bank/prompts.parquet --port 8000",
        "img2prompt serve hf-hub:ORG/NAME -c configs/serve/gpu.yaml \\",
        "    --set serve.batch_size=32   # needs a GPU, and the Hub once",
    ],
    "push": [
        "img2prompt push runs/quickstart/models/lite0_full_ft ORG/NAME \\",
        "    --bank runs/quickstart/bank/prompts.parquet --dry-run staged/",
        "img2prompt push runs/quickstart/models/lite0_full_ft ORG/NAME \\",
        "    --bank runs/quickstart/bank/prompts.parquet   # needs the Hub, a token",
    ],
    "fetch": [
        "img2prompt fetch clip:ViT-H-14/laion2b_s32b_b79k   # needs the Hub: 3.9 GB",
        "img2prompt fetch hf-hub:ORG/NAME                   # needs the Hub",
    ],
    "recipe": [
        "img2prompt recipe configs/recipe/full.yaml --dry-run --gpus 8",
        "img2prompt recipe configs/recipe/full.yaml --gpus 8 \\",
        "    --set recipe.out=/data/recipe --set train.data.batch_size=32",
        "# the second needs 8 GPUs, the Hub and ~2 days (above: --dry-run)",
    ],
    "quickstart": [
        "img2prompt quickstart",
        "img2prompt quickstart --set recipe.out=runs/qs2 --set recipe.report_grid=12 \\",
        "    --set curate.sources.0.count=300",
    ],
    "validate-submission": [
        "img2prompt validate-submission sub.csv   # from img2prompt predict --kaggle",
        "img2prompt validate-submission truth.csv --prompts examples/prompts.csv",
        "# truth.csv: from img2prompt embed examples/prompts.csv --kaggle truth.csv",
    ],
}

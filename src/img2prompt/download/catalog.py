"""The corpus catalog: what each corpus is, where it comes from, how it is pinned and where it lands.

A corpus is one of three kinds, each fetched by its own client: ``files`` (HTTPS, resumable, with a pinned size
and checksum where the publisher or a public mirror states one), ``hub`` (a Hugging Face dataset at a pinned commit,
each file checked against the hub's own LFS sha256 at that commit) or ``kaggle`` (a
competition's files through the ``kaggle`` client). Every file lands under ``<root>/<to>/``, so the catalog's targets
are exactly the paths the curate configs read; ``corpora_for`` finds the corpora a set of curate paths needs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from img2prompt.config import StrictModel

CHECKSUM_ALGORITHMS = ("sha256", "md5")


class RemoteFile(StrictModel):
    """One file over HTTPS. ``size`` and ``checksum`` are exact pins (verified); ``about`` is the size the host's
    page shows, for ``--dry-run`` only, where no exact size is published."""

    url: str
    size: int | None = Field(None, ge=0)
    checksum: str | None = None  # "sha256:<hex>" or "md5:<hex>"; None: nothing published to check against
    about: int | None = Field(None, ge=0)
    name: str | None = None  # file name under the corpus folder (default: the URL's last part)
    extract: list[str] = Field(default_factory=list)  # archive members to unpack beside it
    flatten: bool = False  # unpack each member as its base name (the archive's folder layout varies)

    @field_validator("checksum")
    @classmethod
    def _known_algorithm(cls, value: str | None) -> str | None:
        if value is not None:
            algorithm, _, digest = value.partition(":")
            width = hashlib.new(algorithm).digest_size * 2 if algorithm in CHECKSUM_ALGORITHMS else -1
            if len(digest) != width or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"checksum must be sha256:<64 hex> or md5:<32 hex>, got {value!r}")
        return value

    @property
    def file_name(self) -> str:
        return self.name or PurePosixPath(urlsplit(self.url).path).name


class HubSource(StrictModel):
    """Files of a Hugging Face dataset at a pinned commit; ``{part:05d}`` in a name runs over ``parts``."""

    repo: str
    revision: str = Field(pattern=r"^[0-9a-f]{40}$")
    files: list[str] = Field(min_length=1)
    parts: int | None = Field(None, ge=1)  # how many parts to fetch (COYO-700M has 128); the CLI's --parts sets it
    # file name (as in ``files``) -> size the hub's page shows
    about: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)

    def names(self) -> list[str]:
        """The repo paths to fetch, parts expanded."""
        out = []
        for name in self.files:
            if "{part" in name:
                out.extend(name.format(part=i) for i in range(self.parts or 1))
            else:
                out.append(name)
        return out

    def about_size(self, path: str) -> int | None:
        for pattern, size in self.about.items():
            if pattern == path or ("{part" in pattern and any(pattern.format(part=i) == path
                                                              for i in range(self.parts or 1))):
                return size
        return None


class KaggleSource(StrictModel):
    """A Kaggle competition's data (one zip), unpacked; needs credentials and the competition's rules accepted."""

    competition: str
    extract: list[str] = Field(default_factory=lambda: ["*"])


class Corpus(StrictModel):
    """One corpus of the catalog: where it lands (``to`` under the root) and exactly one way to fetch it."""

    to: str
    licence: str
    files: list[RemoteFile] = Field(default_factory=list)
    hub: HubSource | None = None
    kaggle: KaggleSource | None = None
    by_hand: str | None = None  # what a user does when the host refuses an unattended fetch (a form, a licence)

    @model_validator(mode="after")
    def _one_kind(self) -> Corpus:
        kinds = [kind for kind, value in (("files", self.files), ("hub", self.hub), ("kaggle", self.kaggle)) if value]
        if len(kinds) != 1:
            raise ValueError(f"a corpus needs exactly one of files, hub or kaggle, got {kinds or 'none'}")
        return self

    def fingerprint(self) -> str:
        """Changes whenever what the corpus fetches changes (a URL, a pin, a revision, the number of parts)."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


class DownloadConfig(StrictModel):
    """The ``download:`` section: the root folder, optional mirrors, and the corpora."""

    root: Path = Path("data")
    mirror: str | None = None  # serves https://HOST/PATH as MIRROR/HOST/PATH (a caching proxy, or the tests)
    hub_endpoint: str | None = None  # a Hugging Face hub mirror (default: HF_ENDPOINT, else huggingface.co)
    corpora: dict[str, Corpus] = Field(min_length=1)
    progress: bool = True


@dataclass(frozen=True)
class PlannedFile:
    """A file a corpus fetches: where it lands, its exact size (None: not published), the size its host shows."""

    corpus: str
    target: Path
    size: int | None
    about: int | None
    origin: str


def planned_files(name: str, corpus: Corpus, root: Path) -> list[PlannedFile]:
    """Every file a corpus downloads (archives, not their members), in catalog order."""
    folder = root / corpus.to
    if corpus.hub is not None:
        hub = corpus.hub
        return [PlannedFile(name, folder / path, None, hub.about_size(path), f"hf://datasets/{hub.repo}/{path}")
                for path in hub.names()]
    if corpus.kaggle is not None:
        return [PlannedFile(name, folder / f"{corpus.kaggle.competition}.zip", None, None,
                            f"kaggle competition {corpus.kaggle.competition}")]
    return [PlannedFile(name, folder / f.file_name, f.size, f.about, f.url) for f in corpus.files]


def targets(corpus: Corpus, root: Path) -> list[Path]:
    """Every file a corpus leaves on disk that a reader may read: downloads and the members unpacked from them."""
    folder = root / corpus.to
    if corpus.hub is not None:
        return [folder / path for path in corpus.hub.names()]
    if corpus.kaggle is not None:
        return [folder / pattern for pattern in corpus.kaggle.extract]
    found = []
    for remote in corpus.files:
        found.append(folder / remote.file_name)
        found.extend(folder / (PurePosixPath(m).name if remote.flatten else m) for m in remote.extract)
    return found


def corpora_for(paths: list[str], config: DownloadConfig) -> list[str]:
    """The corpora (catalog order) with a target matched by one of ``paths`` (files or globs, as a curate source
    or ``recipe.kaggle_images`` names them; a folder matches what is inside it)."""
    patterns = [p for path in paths for p in (path, f"{path.rstrip('/')}/*")]
    return [name for name, corpus in config.corpora.items()
            if any(fnmatch.fnmatchcase(t.as_posix(), p) or fnmatch.fnmatchcase(p, t.as_posix())
                   for t in targets(corpus, config.root) for p in patterns)]


def mirrored(url: str, mirror: str | None) -> str:
    """``url`` through ``mirror`` (MIRROR/HOST/PATH), or ``url`` itself."""
    if not mirror:
        return url
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}{query}"

"""The download stage: fetch the chosen corpora of the catalog, verify them, unpack what the readers need.

A corpus already present and verified (its record in ``<root>/.download`` matches) is skipped. The others are fetched
one by one; a corpus that fails does not stop the rest, and at the end every failure is reported, one line each
(what to do, for a corpus that needs a person: a licence form, a Kaggle key). A failure of a corpus in
``optional`` (read only by optional curate sources) is a warning; any other stops the run with an error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from img2prompt.download.catalog import Corpus, DownloadConfig, PlannedFile, mirrored, planned_files
from img2prompt.download.state import is_verified, mark_verified
from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import human_size


def select(config: DownloadConfig, names: list[str] | None, parts: int | None = None) -> dict[str, Corpus]:
    """The corpora to fetch (all when ``names`` is empty), with ``parts`` applied to the corpora in parts."""
    unknown = [name for name in names or [] if name not in config.corpora]
    if unknown:
        raise fail("download", f"no corpus {unknown[0]!r} in the catalog (corpora: {', '.join(config.corpora)})")
    chosen = {name: config.corpora[name] for name in (names or config.corpora)}
    if parts is not None:
        for name, corpus in chosen.items():
            if corpus.hub is not None and corpus.hub.parts is not None:
                chosen[name] = corpus.model_copy(update={"hub": corpus.hub.model_copy(update={"parts": parts})})
    return chosen


def plan(config: DownloadConfig, corpora: dict[str, Corpus]) -> list[PlannedFile]:
    return [f for name, corpus in corpora.items() for f in planned_files(name, corpus, config.root)]


def total_line(files: list[PlannedFile]) -> str:
    """``N files, X`` with ``~`` where a size is only the host's rounded figure, and the files of unknown size."""
    exact = sum(f.size for f in files if f.size is not None)
    about = sum(f.about for f in files if f.size is None and f.about is not None)
    unknown = sum(f.size is None and f.about is None for f in files)
    text = f"{len(files)} files, {'~' if about else ''}{human_size(exact + about)}"
    return text + (f" + {unknown} of unpublished size" if unknown else "")


def print_plan(config: DownloadConfig, corpora: dict[str, Corpus]) -> None:
    """One line per file (corpus, size, target, origin; ``# done`` when verified), then the total."""
    files = plan(config, corpora)
    for f in files:
        size = human_size(f.size) if f.size is not None else f"~{human_size(f.about)}" if f.about is not None else "?"
        done = "   # done" if is_verified(config.root, f.corpus, corpora[f.corpus].fingerprint()) else ""
        print(f"{f.corpus:<22} {size:>10}  {f.target}  <- {f.origin}{done}")
    print(f"total: {total_line(files)}")


def download(config: DownloadConfig, names: list[str] | None = None, *, parts: int | None = None,
             optional: frozenset[str] = frozenset()) -> list[str]:
    """Fetch and verify the chosen corpora; returns the names fetched or found verified."""
    corpora = select(config, names, parts)
    ready: list[str] = []
    failures: dict[str, str] = {}  # said at the end: one failure is the command's one-line error
    for name, corpus in corpora.items():
        fingerprint = corpus.fingerprint()
        if is_verified(config.root, name, fingerprint):
            print(f"{name}: present and verified", flush=True)
            ready.append(name)
            continue
        try:
            files = fetch_corpus(name, corpus, config)
        except Img2PromptError as exc:
            line = f"{name}: {exc}" + (f"; by hand: {corpus.by_hand}" if corpus.by_hand else "")
            if name in optional:
                print(f"warning: {line}", file=sys.stderr, flush=True)
            else:
                failures[name] = line
            continue
        mark_verified(config.root, name, fingerprint, files)
        print(f"{name}: fetched and verified ({len(files)} files)", flush=True)
        ready.append(name)
    if len(failures) == 1:
        raise Img2PromptError(*failures.values())
    if failures:
        for line in failures.values():
            print(f"error: {line}", file=sys.stderr, flush=True)
        raise Img2PromptError(f"{len(failures)} corpora could not be fetched (each one above): {', '.join(failures)}")
    return ready


def fetch_corpus(name: str, corpus: Corpus, config: DownloadConfig) -> list[Path]:
    """Fetch one corpus with its own client; returns every file it left (downloads and unpacked members)."""
    from img2prompt.download.archives import extract

    folder = config.root / corpus.to
    if corpus.hub is not None:
        from img2prompt.download.hub import fetch_hub

        fetch_hub(corpus.hub, folder, endpoint=config.hub_endpoint, progress=config.progress)
        return [folder / path for path in corpus.hub.names()]
    if corpus.kaggle is not None:
        from img2prompt.download.competition import fetch_competition

        archive = fetch_competition(corpus.kaggle.competition, folder, progress=config.progress)
        return [archive, *extract(archive, corpus.kaggle.extract, folder)]
    from img2prompt.download.http import fetch

    files: list[Path] = []
    for remote in corpus.files:
        target = folder / remote.file_name
        if target.is_file():  # verified in an earlier, unfinished run of this corpus, or put there by hand
            check_existing(target, remote.size, remote.checksum)
        else:
            fetch(mirrored(remote.url, config.mirror), target, size=remote.size, checksum=remote.checksum,
                  progress=config.progress)
        files.append(target)
        if remote.extract:
            files.extend(extract(target, remote.extract, folder, flatten=remote.flatten))
    return files


def check_existing(target: Path, size: int | None, checksum: str | None) -> None:
    """A file already at its target must match its pins; it is the user's, so it is never deleted."""
    from img2prompt.download.http import hash_file

    algorithm, _, expected = (checksum or "sha256:").partition(":")
    if size is not None and target.stat().st_size != size:
        raise fail(target, f"is {target.stat().st_size} bytes, not the pinned {size}: delete it to download it again")
    if expected and (got := hash_file(target, algorithm).hexdigest()) != expected:
        raise fail(target, f"{algorithm} is {got}, not the pinned {expected}: delete it to download it again")

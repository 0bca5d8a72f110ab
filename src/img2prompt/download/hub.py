"""Hugging Face datasets at a pinned commit, through ``huggingface_hub``: ``snapshot_download`` into the corpus folder
with the wanted files as allow-patterns (files already there at that commit are skipped; a cut connection is resumed
with a range request by the client; a killed run loses only the file in flight), then each file is checked against
the hub's own LFS sha256 (or git blob id) at that commit: a pinned commit pins every byte."""

from __future__ import annotations

from pathlib import Path

from img2prompt.download.catalog import HubSource
from img2prompt.errors import Img2PromptError, fail

REPO_TYPE = "dataset"


def fetch_hub(source: HubSource, folder: Path, *, endpoint: str | None, progress: bool) -> None:
    """Fetch ``source.names()`` into ``folder`` (the repo layout below it) and verify each file."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    where = f"{source.repo}@{source.revision[:7]}"
    names = source.names()
    if not progress:
        disable_progress_bars()
    try:
        snapshot_download(source.repo, repo_type=REPO_TYPE, revision=source.revision, local_dir=folder,
                          allow_patterns=names, endpoint=endpoint, max_workers=4)
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise fail(where, f"no file {missing[0]} at this revision ({len(missing)} missing)")
        check = HfApi(endpoint=endpoint).verify_repo_checksums(source.repo, repo_type=REPO_TYPE,
                                                                revision=source.revision, local_dir=folder)
    except GatedRepoError:
        raise fail(where, f"gated: accept its terms at https://huggingface.co/datasets/{source.repo} and log in "
                          "(hf auth login), then run again") from None
    except RevisionNotFoundError:
        raise fail(where, "no such revision on the hub") from None
    except RepositoryNotFoundError:
        raise fail(where, "no such dataset on the hub (or it is private: log in with hf auth login)") from None
    except OfflineModeIsEnabled:
        raise fail(where, "HF_HUB_OFFLINE is set: unset it to download") from None
    except Img2PromptError:
        raise
    except (HfHubHTTPError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise fail(where, f"cannot fetch from the hub ({first}); run again to resume") from None
    except Exception as exc:  # the hub client's transport errors (httpx2) have no public base class to name
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            raise fail(where, f"cannot reach the hub ({type(exc).__name__}: {exc}); run again to resume") from None
        raise
    finally:
        enable_progress_bars()
    wanted = set(names)
    for bad in (m for m in check.mismatches if m["path"] in wanted):
        (folder / bad["path"]).unlink(missing_ok=True)
        raise fail(folder / bad["path"], f"{bad['algorithm']} mismatch with the hub at {source.revision[:7]}: "
                                         f"expected {bad['expected']}, got {bad['actual']} (deleted; run again to "
                                         "fetch it anew)")

"""A Kaggle competition's data through the ``kaggle`` client. It needs an API key (``~/.kaggle/kaggle.json``,
``KAGGLE_USERNAME``/``KAGGLE_KEY`` or ``KAGGLE_API_TOKEN``) and the competition's rules accepted on its page; without
either, the fetch is one line saying what to do (the client itself would print a page of help and exit)."""

from __future__ import annotations

import os
from pathlib import Path

from img2prompt.errors import fail

RULES = "https://www.kaggle.com/competitions/{competition}/rules"
TOKEN_PAGE = "https://www.kaggle.com/settings/api"


def has_credentials() -> bool:
    """Whether the ``kaggle`` client will find a key, checked before it is asked (it exits the process when it
    finds none)."""
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else [
        Path.home() / ".kaggle", xdg]  # the client's own search order
    return bool(os.environ.get("KAGGLE_API_TOKEN")
                or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
                or any((f / name).is_file() for f in folders for name in ("kaggle.json", "access_token")))


def fetch_competition(competition: str, folder: Path, *, progress: bool) -> Path:
    """Download the competition's zip into ``folder`` (the client resumes a partial one); returns the zip."""
    where = f"kaggle competition {competition}"
    if not has_credentials():
        raise fail(where, f"no Kaggle API key: create one at {TOKEN_PAGE} (save it as ~/.kaggle/kaggle.json), accept "
                          f"the rules at {RULES.format(competition=competition)}, then run again")
    import requests
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        api.authenticate()
        api.competition_download_files(competition, path=str(folder), quiet=not progress)
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        if code in (401, 403):
            raise fail(where, f"refused (HTTP {code}): accept the rules at {RULES.format(competition=competition)} "
                              f"and check your API key ({TOKEN_PAGE}), then run again") from None
        raise fail(where, f"download failed ({exc})") from None
    except requests.RequestException as exc:
        raise fail(where, f"cannot reach Kaggle ({type(exc).__name__}); run again to resume") from None
    archive = folder / f"{competition}.zip"
    if not archive.is_file():
        raise fail(archive, "the kaggle client finished without writing it")
    return archive

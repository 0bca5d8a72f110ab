"""Shared test fixtures: where the real reference data lives, skipping cleanly when it is absent."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one compute thread each, and
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # for the processes the tests start
        os.environ.setdefault(name, "1")
# The modules that take longest go first, so `pytest -n 2 --dist loadfile` does not end waiting on one of them.
SLOWEST_FIRST = ("test_quickstart.py", "test_recipe.py", "test_curate_dedup_real.py", "test_train_fsdp.py",
                 "test_train_loop.py", "test_train_datapath.py", "test_serve_e2e.py", "test_generate_run.py",
                 "test_train_ddp.py", "test_interrogate.py", "test_embedding.py", "test_cli_errors.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip in a user's fresh clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (only the project's own machines have it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def text_embedder():
    """One exact target embedder for the whole session: loading it costs ~2 s."""
    from img2prompt.embedding import TextEmbedder

    return TextEmbedder()


TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                             "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> tuple[str, Path]:
    """A tiny open_clip model: its name, registered as an open_clip config, and a weights file of it, so the
    zero-shot kind ``clip:NAME/WEIGHTS`` runs offline through open_clip's own loading calls."""
    import json

    import open_clip
    import torch

    root = tmp_path_factory.mktemp("tiny_clip")
    (root / "img2prompt-tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root / "img2prompt-tiny-clip.json")
    torch.manual_seed(0)
    torch.save(open_clip.create_model("img2prompt-tiny-clip").state_dict(), root / "weights.pt")
    return "img2prompt-tiny-clip", root / "weights.pt"


@pytest.fixture
def cli(capsys, monkeypatch) -> Callable[..., tuple[int, str]]:
    """``img2prompt ARGS`` run in this process through the console entry point: (exit status, stderr). Seconds
    cheaper than a subprocess, and the same error handling (one line, exit 1)."""
    from img2prompt.cli import main

    def run(*args: object) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["img2prompt", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        return exited.value.code or 0, capsys.readouterr().err

    return run


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1200,900"]


@pytest.fixture()
def browser(tmp_path):
    """Headless Chromium driven by Selenium: the web page and the HTML reports as a user sees them."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium or chromedriver not found: run `make browser` (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def hosts():
    """A local hub and HTTPS host on 127.0.0.1 for one test module (tests/hub_server.py)."""
    from hub_server import LocalHosts

    server = LocalHosts()
    yield server
    server.close()


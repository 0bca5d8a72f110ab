"""Shared test fixtures: where the real reference data lives, skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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

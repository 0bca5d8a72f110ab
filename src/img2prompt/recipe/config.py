"""The ``recipe:`` section: which stage configs make the chain, and where its own outputs go."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from img2prompt.config import OUTPUT_FOLDER, StrictModel


class RecipeConfig(StrictModel):
    """The ``recipe:`` section. Each stage config is a file of its own, so it also runs on its own."""

    # The chain's root. The stage configs write under the out this file ships with; another value moves the whole
    # chain (each step gets --set overrides for the paths it reads and writes under the old root).
    out: Annotated[Path, OUTPUT_FOLDER] = Path("runs/recipe")
    download: str | None = None  # corpus catalog: step 0 fetches every corpus the chain reads into its paths
    write_prompts: str | None = None  # the LLM-written tier, written before curate into an optional curate source
    curate: str
    bank: str | None = None  # a second curation, the prompt bank the report and decoded.csv decode with
    generate: list[str] = Field(min_length=1)  # one shard set per config; one of them holds val and test
    models: dict[str, list[str]] = Field(min_length=1)  # name -> its train configs, stage by stage
    members: list[str] = Field(default_factory=list)  # ensemble members without training, e.g. clip:MODEL/TAG
    baselines: list[Literal["mean", "nearest"]] = Field(default_factory=list)  # scored on test beside the models
    nearest_size: int | None = Field(None, ge=32, le=1024)  # the nearest baseline's input size (None: native, 224)
    report_grid: int = Field(24, ge=0)  # images per model in the report
    # Images to predict with the final model: submission.csv (Kaggle format, validated) and, with a bank,
    # decoded.csv. A folder that is not there stops the chain before it starts, unless ``images_optional``
    # (the quickstart's Kaggle sample comes from ../shared, which a user's clone does not have).
    images: list[str] = Field(default_factory=list)
    images_optional: bool = False

"""The ``curate:`` section: the sources (hq first, then lq, each in order), the rules, the embedding, dedup and the
splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from img2prompt.config import OUTPUT_FOLDER, Seed, StrictModel
from img2prompt.curate.dedup import DedupConfig
from img2prompt.curate.rules import RulesConfig
from img2prompt.curate.sources import ReadOptions, SourceType

Tier = Literal["hq", "lq"]


class SourceConfig(StrictModel):
    """One corpus: its reader (``type``), its file or glob, its tier and reader options."""

    name: str
    type: SourceType
    path: str | list[str] | None = None  # a file, a glob, or a list of them
    tier: Tier = "hq"
    column: str | None = None
    delimiter: str = ","
    header: bool = True
    count: int = Field(0, ge=0)  # scenes only: how many grammar prompts
    seed: Seed = 0  # scenes only
    limit: int | None = Field(None, ge=1)  # read at most this many prompts (quick runs)
    # stop once this many of the source's prompts passed the rules and exact dedup: caps a huge corpus (COYO)
    # at the size the recipe needs, since curation memory grows with the candidates (~2.15 GB per million)
    max_kept: int | None = Field(None, ge=1)
    # Parquet sources (COYO): keep only rows whose similarity_column is above this (the winner: COYO above 0.3)
    min_similarity: float | None = Field(None, ge=0, le=1)
    similarity_column: str = "clip_similarity_vitb32"
    # keep what could be read of a damaged file (a cut JSON, an unreadable Parquet row group) or of a source
    # whose bad rows pass curate.max_bad_share, instead of stopping
    allow_partial: bool = False
    optional: bool = False  # a missing file is a warning and the source is left out, not a stop (LLM prompts)

    @model_validator(mode="after")
    def _needs_input(self) -> SourceConfig:
        if self.type == "scenes" and self.count <= 0:
            raise ValueError(f"source {self.name!r}: a scenes source needs count > 0")
        if self.type != "scenes" and not self.path:
            raise ValueError(f"source {self.name!r}: a {self.type} source needs a path")
        return self

    def options(self) -> ReadOptions:
        return ReadOptions(self.column, self.delimiter, self.header, self.count, self.seed, self.min_similarity,
                           self.similarity_column)


class EmbeddingConfig(StrictModel):
    backend: Literal["exact", "int8"] = "exact"  # targets must be exact; int8 is for quick looks only
    max_tokens: int = Field(1024, ge=1)  # padded tokens per batch
    device: str = "cpu"
    cache_dir: Annotated[Path | None, OUTPUT_FOLDER] = None  # default <out>/cache
    chunk: int = Field(4096, ge=1)  # prompts per cached chunk: the unit of resume


class SplitConfig(StrictModel):
    """Fractions of clusters (not prompts) sent to validation and test."""

    val: float = Field(0.05, ge=0, le=1)
    test: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _fractions_add_up(self) -> SplitConfig:
        if self.val + self.test > 1:
            raise ValueError(f"val ({self.val:g}) and test ({self.test:g}) add up to more than 1")
        return self


class CurateConfig(StrictModel):
    out: Annotated[Path, OUTPUT_FOLDER] = Path("runs/curate")
    sources: list[SourceConfig] = Field(min_length=1)
    rules: RulesConfig = RulesConfig()
    dedup: DedupConfig = DedupConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    splits: SplitConfig = SplitConfig()
    report_examples: int = Field(40, ge=0)
    progress: bool = True
    max_bad_share: float = Field(0.01, ge=0, le=1)  # a source with more bad rows than this share stops the run

    @model_validator(mode="after")
    def _unique_names(self) -> CurateConfig:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        return self

"""The config sections a file may hold, and the verb that runs each: the registry of the orchestrators.

The library's ``ConfigFile`` knows no stage; the CLI and the recipe read every config through ``read_config``, so a
misspelled section is refused by every verb (with a "did you mean"), while each verb validates, and imports the
model of, only the sections it runs: a serve config that also holds a ``train:`` section never loads the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from img2prompt.config import ConfigFile, StrictModel

Section = TypeVar("Section", bound=StrictModel)

# In pipeline order; ``decode`` is read by decode, evaluate, interrogate and serve, ``recipe`` by recipe and quickstart.
SECTIONS = ("download", "write_prompts", "curate", "generate", "train", "decode", "serve", "recipe")


def read_config(path: str | Path | None, overrides: list[str] | None = None) -> ConfigFile:
    """A config file with its bases and ``--set`` overrides; its section names checked against ``SECTIONS``."""
    return ConfigFile(path, overrides, SECTIONS)


def load_section(path: str | Path | None, name: str, model: type[Section], overrides: list[str] | None = None
                 ) -> Section:
    """Section ``name`` of a config file (with ``--set`` overrides), validated as ``model``."""
    return read_config(path, overrides).section(name, model)

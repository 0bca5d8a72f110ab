"""The ``img2prompt`` command: one thin verb per stage, in three modules (``data``, ``models``, ``pipeline``)
registered on one Typer app (``app``). Heavy imports stay inside the verbs, so ``--help`` is instant."""

from img2prompt.cli import data, models, pipeline  # noqa: F401 (each registers its verbs on the app)
from img2prompt.cli.app import app, main
from img2prompt.cli.examples import EXAMPLES, ORDER

__all__ = ["EXAMPLES", "ORDER", "app", "main"]

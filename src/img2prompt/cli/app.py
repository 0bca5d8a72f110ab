"""The ``img2prompt`` Typer app: the verb registry (``verb``), the options every verb shares, and the console entry
point (``main``: a user error is one line and exit code 1, never a traceback)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args

import typer
from typer.core import TyperArgument, TyperGroup

from img2prompt import __version__
from img2prompt.cli.examples import EXAMPLES, ORDER
from img2prompt.errors import Img2PromptError
from img2prompt.extras import require

if TYPE_CHECKING:
    from img2prompt.config import StrictModel

Section = TypeVar("Section", bound="StrictModel")


class Verbs(TyperGroup):
    """The verbs in pipeline order (``ORDER``; a verb it does not name comes last). Typer already answers a
    mistyped verb or option with the close ones ("Did you mean", "Possible options")."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: list(ORDER).index(name) if name in ORDER else len(ORDER))

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _with_metavars(super().get_params(ctx))

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _with_metavars(command.get_params(ctx))
        return command

    def invoke(self, ctx: typer.Context) -> Any:
        """A bad option value (``--batch-size 0``) is one line naming the option, the value and the allowed range,
        like every other user error, instead of a usage box."""
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            raise Img2PromptError(_bad_option(exc)) from None


TYPE_NAMES = {str: "TEXT", Path: "PATH", int: "INTEGER", float: "FLOAT"}


def _with_metavars(params: list[Any]) -> list[Any]:
    """Help shows what to type, not Python types (``<bool>``, ``<list[str]>``): nothing after a flag, a choice's
    choices (``[fast|best]``), and TEXT, PATH, INTEGER or FLOAT for other values; an argument by its name in
    capitals. A metavar given where the option is declared is kept."""
    for param in params:
        described = param.type_descriptor
        if described.is_choice:
            shown = "[" + "|".join(str(choice) for choice in described.choices) + "]"
        else:
            kind = get_args(described.annotation)[0] if described.is_list else described.annotation
            shown = TYPE_NAMES.get(kind, str(getattr(kind, "__name__", kind)).upper())
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or param.name.upper()
            param.display_type_rich = lambda ctx, shown=shown: shown  # typer shows an argument's type, not metavar
        elif param.metavar is None:
            param.metavar = "" if param.is_flag else shown
    return params


def _bad_option(exc: typer.BadParameter) -> str:
    """``Invalid value for '--grid': Input should be greater than or equal to 0 (got -5)``: typer checks option
    values with pydantic, whose message names the bound but not the value."""
    from pydantic import ValidationError

    cause = exc.__cause__
    got = f" (got {cause.errors()[0]['input']})" if isinstance(cause, ValidationError) else ""
    return exc.format_message() + got


app = typer.Typer(
    cls=Verbs,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Recover the prompt behind an image made by a text-to-image model.",
)


def verb(name: str, *, needs: tuple[str, ...] = ()) -> Any:
    """Register a verb under ``name``, in its help panel, with its examples at the end of its help; a verb that
    ``needs`` extras of the install checks them first (``extras.require``: one line naming the pip install)."""
    examples = "\n".join(EXAMPLES[name])
    command = app.command(name, rich_help_panel=ORDER[name], epilog=f"[b]Examples[/b]\n\n{examples}")

    def register(function: Callable[..., Any]) -> Any:
        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            require(*needs)
            return function(*args, **kwargs)

        return command(checked if needs else function)

    return register


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"img2prompt {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Options of the command itself (before the verb)."""


def set_option(form: str) -> Any:
    """The repeatable ``--set`` option, saying which keys the verb reads (its examples show real ones)."""
    return typer.Option("--set", help=f"Override a config key: {form} (repeatable; see the examples).")


def section(config: Path | None, overrides: list[str] | None, name: str, model: type[Section]) -> Section:
    """``sections.load_section``, imported when a verb runs (``--help`` stays instant)."""
    from img2prompt.sections import load_section

    return load_section(config, name, model, overrides)


ConfigArg = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
# The decoder's shipped search modes (decode.default_modes; a test holds them equal); a config's own mode is named
# with --set decode.mode=NAME.
Mode = Literal["fast", "best"]
ModeOption = Annotated[Mode | None, typer.Option(help="Search effort (default: decode.mode, fast).")]


def main() -> None:
    """Console entry point: user errors print one line and exit 1, never a traceback."""
    # huggingface_hub prints its records with its own handler; open_clip's root-logger calls (logging.info) give the
    # root one too, and each record would print twice.
    logging.getLogger("huggingface_hub").propagate = False
    try:
        app()
    except Img2PromptError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)

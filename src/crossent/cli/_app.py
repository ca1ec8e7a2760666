"""The Typer application every command registers on, and the error convention of the CLI.

A command reports bad input by raising :class:`CliError` (or letting a library ValueError,
TypeError, IndexError or OSError through): :func:`crossent.cli.main` prints it as one line on
standard error and exits with status 2. No traceback ever reaches the user.
"""

from __future__ import annotations

import typer
from rich.console import Console

__all__ = ["app", "CliError", "console", "err_console"]

app = typer.Typer(
    name="crossent",
    help="Cross-entropy done exactly and fast: train models with it, compare models by it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _commands() -> None:
    """Cross-entropy done exactly and fast: train models with it, compare models by it."""
    # A callback keeps `crossent NAME` a sub-command even while only NAME's module is
    # imported (Typer runs a lone command without its name otherwise).


class CliError(Exception):
    """Bad input from the user: printed as one line, exit status 2.

    Give the file, row and column where there are some, for example
    ``CliError("preds.csv: row 17, column 'cat': probability 1.3 is outside [0, 1]")``.
    """

"""The Typer application every command registers on, and the checks commands share.

A command reports bad input by raising :class:`CliError` (see :mod:`crossent.cli._errors`).
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

import typer
from _crossent_launcher.commands import APP_HELP

from ._errors import CliError

__all__ = ["app", "CliError", "console", "err_console", "check_input_file", "check_output_file"]

app = typer.Typer(
    name="crossent",
    help=APP_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@functools.lru_cache(maxsize=None)
def console():
    """The Rich console of standard output, made (and Rich imported) on first use: a command
    that prints no table (``score --json``, the calculator) never imports Rich."""
    from rich.console import Console

    return Console()


@functools.lru_cache(maxsize=None)
def err_console():
    """The Rich console of standard error (progress bars), made on first use."""
    from rich.console import Console

    return Console(stderr=True)


@app.callback()
def _commands() -> None:
    """The group's callback (its help is ``APP_HELP``)."""
    # A callback keeps `crossent NAME` a sub-command even while only NAME's module is
    # imported (Typer runs a lone command without its name otherwise).


def check_input_file(path: Path, option: str) -> None:
    """``path`` (given as ``option``) must be a readable file: named error otherwise."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CliError(f"{option} {path}: no such file") from None
    except OSError as exc:
        raise CliError(f"{option} {path}: cannot open it ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise CliError(f"{option} {path}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise CliError(f"{option} {path}: is not a regular file (a FIFO, socket or device); "
                       f"give a file")
    if not os.access(path, os.R_OK):
        raise CliError(f"{option} {path}: permission denied (cannot read it)")


def check_output_file(path: Path, option: str, suffixes=None) -> None:
    """``path`` (given as ``option``) can be written: checked before the work, so that a bad
    output path fails at once, named, instead of after the computation."""
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise CliError(f"{option} {path}: unknown format {path.suffix or '(no suffix)'!r}; "
                       f"use {' or '.join(suffixes)}")
    if path.is_dir():
        raise CliError(f"{option} {path}: is a directory; give a file name")
    for parent in path.absolute().parents:  # the nearest existing ancestor must be a directory
        if parent.exists():
            if not parent.is_dir():
                raise CliError(f"{option} {path}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise CliError(f"{option} {path}: permission denied (cannot write in {parent})")
            break

"""The commands' registry and their Typer application, and the checks commands share.

A command module declares its parameters with :func:`Option` and :func:`Argument` (the
signatures of ``typer.Option`` and ``typer.Argument``) and registers with :func:`command`,
none of which imports Typer: a plain call (:mod:`crossent.cli._plain`) reads the declarations
and runs the function without it (Typer's import is 45 ms of a 0.8 s ``crossent score``).
:func:`get_app` (also ``app``) builds the Typer application of the commands registered so far
when help, a usage error or a call that is not plain needs it.

A command reports bad input by raising :class:`CliError` (see :mod:`crossent.cli._errors`).
"""

from __future__ import annotations

import functools
import os
import stat
import types
from pathlib import Path

from _crossent_launcher.commands import APP_HELP

from ._errors import CliError

__all__ = ["Argument", "CliError", "Option", "app", "check_input_file", "check_output_file", "command",
           "console", "err_console", "get_app", "registered"]


class Param:
    """The arguments of a ``typer.Option`` or ``typer.Argument`` (``kind``), kept until Typer
    is needed; its settings read as attributes (None when not given), as Typer's own."""

    __slots__ = ("kind", "default", "param_decls", "settings", "_typer")

    def __init__(self, kind, default, param_decls, settings):
        self.kind, self.default, self.param_decls, self.settings = kind, default, param_decls, settings
        self._typer = None

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self.settings.get(name)

    def typer(self):
        """The ``typer.Option``/``typer.Argument`` of these arguments (made once)."""
        if self._typer is None:
            import typer

            self._typer = getattr(typer, self.kind)(self.default, *self.param_decls, **self.settings)
        return self._typer


def Option(default, *param_decls, **settings) -> Param:  # noqa: N802 - typer.Option's name
    """``typer.Option(default, *param_decls, **settings)``, made when Typer is needed."""
    return Param("Option", default, param_decls, settings)


def Argument(default, **settings) -> Param:  # noqa: N802 - typer.Argument's name
    """``typer.Argument(default, **settings)``, made when Typer is needed."""
    return Param("Argument", default, (), settings)


_REGISTERED: dict = {}  # command name -> (function, app.command's keyword arguments)
_APP = []  # the Typer application, once built


def command(name: str, **settings):
    """Register the decorated function as the command ``name`` (``app.command(name, **settings)``
    of the Typer application, now if it is built, else when it is)."""
    def register(fn):
        _REGISTERED[name] = (fn, settings)
        if _APP:
            _APP[0].command(name, **settings)(_with_typer_defaults(fn))
        return fn
    return register


def registered(name: str):
    """The function of the registered command ``name`` (its module imported), or None."""
    entry = _REGISTERED.get(name)
    return None if entry is None else entry[0]


def _with_typer_defaults(fn):
    """A copy of ``fn`` whose :class:`Param` defaults are Typer's objects (what Typer reads)."""
    def real(v):
        return v.typer() if isinstance(v, Param) else v
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__,
                              tuple(real(v) for v in fn.__defaults__ or ()), fn.__closure__)
    copy.__kwdefaults__ = {k: real(v) for k, v in (fn.__kwdefaults__ or {}).items()} or None
    functools.update_wrapper(copy, fn, updated=())
    del copy.__wrapped__  # Typer must read the copy's signature, not the original's
    return copy


def get_app():
    """The Typer application of the commands registered so far (and of those registered later)."""
    if not _APP:
        import typer

        application = typer.Typer(
            name="crossent",
            help=APP_HELP,
            no_args_is_help=True,
            add_completion=False,
            pretty_exceptions_enable=False,
            rich_markup_mode=None,
        )
        application.callback()(_commands)
        for name, (fn, settings) in _REGISTERED.items():
            application.command(name, **settings)(_with_typer_defaults(fn))
        _APP.append(application)
    return _APP[0]


def _commands() -> None:
    """The group's callback (its help is ``APP_HELP``)."""
    # A callback keeps `crossent NAME` a sub-command even while only NAME's module is
    # imported (Typer runs a lone command without its name otherwise).


def __getattr__(name):
    if name == "app":  # ``from crossent.cli._app import app``: built on demand
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

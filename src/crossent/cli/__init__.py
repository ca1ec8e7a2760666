"""The ``crossent`` command line: an edge over the library (the library never imports it).

Each sub-command lives in its own module and registers itself with :mod:`crossent.cli._app`
when imported; the Typer application is built from that registry only when it is needed.
:func:`main` imports only the module of the command it is asked for, so a command whose
optional dependencies are missing fails alone, with one line naming the extra that installs
them, and the others keep working.

Typer (whose import, with pydantic's, took longer than the work) is imported only for help,
usage errors and calls that are not plain: the top-level help is printed from the command table
of :mod:`_crossent_launcher.commands`, a plain calculator call is computed by
:func:`crossent.cli.calculator.run`, and the other commands, called plainly, get their arguments
from :mod:`crossent.cli._plain`. All first check that the ``cli`` extra is installed, so that
without it they fail as every command does.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import sys
import threading
import warnings

from _crossent_launcher.commands import COMMANDS, require_cli_extra, top_help

from ._errors import USER_ERRORS

__all__ = ["main"]

# The module (of this package) that registers each command.
_COMMANDS = {name: module for name, (module, _) in COMMANDS.items()}
INTERRUPTED = "crossent: interrupted"
_AGAIN_S = 0.2  # how soon a Ctrl-C that was swallowed is raised again


class _Interrupted(BaseException):
    """Ctrl-C, raised by :func:`main`'s SIGINT handler in place of KeyboardInterrupt, which
    Typer would turn into a silent exit."""


def main(argv=None) -> int:
    """Run the command line; return (and, as a script, exit with) its status.

    0 on success; 2 for bad input or usage, or a command whose optional dependency is
    missing, with a one-line message on standard error; 130 after Ctrl-C (the line
    ``crossent: interrupted``); 1 for an unexpected internal error (still one line, no
    traceback). Warnings are collected: after a failure only the error line is printed, after
    a success each distinct warning as one line ``crossent: warning: ...``.
    """
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    handler = threading.current_thread() is threading.main_thread()
    ctrl_c = _CtrlC() if handler else None
    previous = signal.signal(signal.SIGINT, ctrl_c) if handler else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            status = _run(args)
        if ctrl_c is not None and ctrl_c.seen:
            raise _Interrupted  # the command swallowed it and ran on to its end
        if status == 0:
            for line in dict.fromkeys(_one_line(str(w.message)) for w in caught):
                print(f"crossent: warning: {line}", file=sys.stderr)
        return status
    except (_Interrupted, KeyboardInterrupt):
        if handler:
            ctrl_c.taken()  # a second Ctrl-C cannot cut the line
        print(INTERRUPTED, file=sys.stderr)
        return 130
    finally:
        if handler:
            ctrl_c.taken()
            signal.signal(signal.SIGINT, previous)


class _CtrlC:
    """:func:`main`'s SIGINT handler: it raises :class:`_Interrupted`, and raises it again
    every ``_AGAIN_S`` seconds (by a SIGINT the process sends itself) until :func:`main` has
    taken it, as code that the command runs can swallow the exception (pyarrow drops any
    exception raised while it imports pandas from C++; a C extension's import can too)."""

    def __init__(self):
        self.seen = False
        self._taken = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, signum, frame):
        if self._taken.is_set():
            return
        if not self.seen:
            self.seen = True
            threading.Thread(target=self._again, name="crossent-ctrl-c", daemon=True).start()
        raise _Interrupted

    def _again(self):
        while not self._taken.wait(_AGAIN_S):
            with self._lock:  # no SIGINT once taken() has returned
                if not self._taken.is_set():
                    os.kill(os.getpid(), signal.SIGINT)

    def taken(self) -> None:
        """From now on a SIGINT does nothing and none is sent again."""
        with self._lock:
            self._taken.set()


def _run(args) -> int:
    """Import the commands, run the one asked for, and turn every error into one line."""
    args = args or ["--help"]  # a bare `crossent` shows the commands
    command = next((a for a in args if not a.startswith("-")), None)
    try:
        require_cli_extra()
        if args == ["--help"]:
            print(top_help())
            return 0
        if args[0] == command and _COMMANDS.get(command) == "calculator_commands":
            from . import calculator

            try:
                if calculator.run(args):
                    return 0
            except USER_ERRORS as exc:
                return _error(str(exc) if str(exc).strip() else type(exc).__name__)
        from ._app import registered

        for module in dict.fromkeys(_COMMANDS.values()) if command not in _COMMANDS else [_COMMANDS[command]]:
            _register(module, skip_missing=command not in _COMMANDS)
        kwargs = None
        if args[0] == command and command in _COMMANDS:
            from ._plain import plain_arguments

            kwargs = plain_arguments(registered(command), args[1:])
        try:
            if kwargs is not None:  # a plain call: Typer would pass the same arguments
                result = registered(command)(**kwargs)
            else:
                result = _through_typer(args)
        except USER_ERRORS as exc:
            return _error(str(exc) if str(exc).strip() else type(exc).__name__)
    except ImportError as exc:
        return _error(_missing_dependency(exc, command))
    except Exception as exc:  # never a traceback: report it as one line, exit 1
        print(f"crossent: internal error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def _through_typer(args):
    """Run ``args`` by the Typer application: its result, or the status of its exit."""
    import typer

    from ._app import get_app

    try:
        return get_app()(args=args, prog_name="crossent", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        raise _Interrupted from None
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument, ...
        return _error(exc.format_message())


def _register(module: str, *, skip_missing: bool) -> None:
    """Import ``crossent.cli.<module>`` (registering its commands); for the full help,
    a module whose optional dependencies are missing is left out."""
    try:
        importlib.import_module(f"{__name__}.{module}")
    except ImportError:
        if not skip_missing:
            raise


def _error(message: str) -> int:
    print(f"crossent: error: {_one_line(message)}", file=sys.stderr)
    return 2


def _one_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0] if lines else ""


def _missing_dependency(exc: ImportError, command) -> str:
    """One line: which package the command needs and which extra of crossent installs it."""
    name = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not name:
        return str(exc)
    package = name.split(".")[0]
    who = f"'crossent {command}'" if command in _COMMANDS else "the crossent command"
    extra = _extra_providing(package)
    install = f"pip install 'crossent[{extra}]'" if extra else f"pip install {package}"
    return f"{who} needs the package {package!r}, which is not installed: {install}"


def _extra_providing(package: str):
    """The extra of crossent's installed metadata that lists ``package``, or None."""
    import importlib.metadata  # only on this error path: it costs start-up time

    try:
        requirements = importlib.metadata.requires("crossent") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*).*;.*extra\s*==\s*['\"]([^'\"]+)['\"]",
                     requirement)
        if m and m.group(1).lower().replace("-", "_") == package.lower():
            return m.group(2)
    return None

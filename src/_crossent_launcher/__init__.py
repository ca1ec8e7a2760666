"""The ``crossent`` console script, kept outside the ``crossent`` package on purpose.

Importing anything inside ``crossent`` first runs ``crossent/__init__.py`` (NumPy, the
compiled kernels: about half of the start-up time). ``crossent`` and ``crossent --help`` are
answered here without it, from the command table of :mod:`_crossent_launcher.commands`. Ctrl-C during those imports would escape
any handler inside the package as a KeyboardInterrupt traceback; here the handler is in
place before the first of them, so the command ends with the one line of
:func:`crossent.cli.main` (``crossent: interrupted``, exit status 130) at any moment.
"""

import signal
import sys

__all__ = ["main"]

_INTERRUPTED = "crossent: interrupted"  # the same line as crossent.cli.INTERRUPTED


def _help_without_the_package() -> bool:
    """Print the top-level help if the cli extra is installed (True); otherwise False, and
    :func:`crossent.cli.main` says what to install."""
    from .commands import require_cli_extra, top_help

    try:
        require_cli_extra()
    except ImportError:
        return False
    print(top_help())
    return True


def main() -> int:
    """Import and run :func:`crossent.cli.main`; Ctrl-C while importing is one line, 130.

    A C extension can turn the KeyboardInterrupt into another error (NumPy's import raises an
    ImportError) or drop it: the handler notes each SIGINT, so either ends the same way.
    """
    interrupted = []

    def on_sigint(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if sys.argv[1:] in ([], ["--help"]) and _help_without_the_package():
            signal.signal(signal.SIGINT, previous)
            return 0
        from crossent.cli import main as run

        if interrupted:
            raise KeyboardInterrupt
    except BaseException as exc:
        if not (interrupted or isinstance(exc, KeyboardInterrupt)):
            signal.signal(signal.SIGINT, previous)
            raise
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(_INTERRUPTED, file=sys.stderr)
        return 130
    signal.signal(signal.SIGINT, previous)
    return run()

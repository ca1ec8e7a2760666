"""The ``crossent`` command line: an edge over the library (the library never imports it).

Each sub-command lives in its own module and registers itself on :data:`app` when imported.
"""

from __future__ import annotations

import sys

import typer

from ._app import CliError, app

# Sub-commands: importing a module registers its commands on ``app``.
from . import calculator  # noqa: E402,F401  (entropy, cross-entropy, kl, js)
from . import score  # noqa: E402,F401  (score, compare)
from . import bench  # noqa: E402,F401  (bench)
from . import demo  # noqa: E402,F401  (demo)
from . import train  # noqa: E402,F401  (train)

__all__ = ["app", "main", "CliError"]

_USER_ERRORS = (CliError, ValueError, TypeError, IndexError, OSError)


def main(argv=None) -> int:
    """Run the command line; return (and, as a script, exit with) its status.

    0 on success; 2 for bad input or usage, with a one-line message on standard error;
    1 for an unexpected internal error (still one line, no traceback).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        result = app(args=args, prog_name="crossent", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("crossent: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument, ...
        print(f"crossent: error: {exc.format_message()}", file=sys.stderr)
        return 2
    except _USER_ERRORS as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"crossent: error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback: report it as one line, exit 1
        print(f"crossent: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def _entry() -> None:
    sys.exit(main())

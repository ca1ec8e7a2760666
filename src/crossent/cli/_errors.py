"""The error convention of the command line, importable without Typer.

A command reports bad input by raising :class:`CliError` (or letting a library ValueError,
TypeError, IndexError or OSError through): :func:`crossent.cli.main` prints it as one line on
standard error and exits with status 2. No traceback ever reaches the user.
"""

__all__ = ["CliError", "USER_ERRORS"]


class CliError(Exception):
    """Bad input from the user: printed as one line, exit status 2.

    Give the file, row and column where there are some, for example
    ``CliError("preds.csv: row 17, column 'cat': probability 1.3 is outside [0, 1]")``.
    """


#: What a command may raise for bad input: one line, exit status 2.
USER_ERRORS = (CliError, ValueError, TypeError, IndexError, OSError)

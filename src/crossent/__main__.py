"""``python -m crossent``: the command line."""

from .cli import _entry

_entry()

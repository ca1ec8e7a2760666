"""What every scene hands to whoever shows it: a table of plain strings and a two-line verdict."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

__all__ = ["SceneTable", "check_count"]


@dataclass(frozen=True)
class SceneTable:
    """A table ready to print: a title, column headers and rows of formatted cells.

    The command line renders it with Rich; the documentation prints it as text.
    """

    title: str
    columns: tuple
    rows: tuple

    def as_text(self) -> str:
        """The table as aligned plain text (header, rule, rows).

        Examples
        --------
        >>> from crossent.demos import SceneTable
        >>> print(SceneTable("t", ("a", "bb"), (("1", "2"), ("10", "3"))).as_text())
        t
        a   bb
        --  --
        1    2
        10   3
        """
        cells = [tuple(self.columns)] + [tuple(row) for row in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]

        def line(row):
            # first column left-aligned (labels), the others right-aligned (numbers)
            parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            return "  ".join(parts).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([self.title, line(cells[0]), rule] + [line(r) for r in cells[1:]])


def check_count(value, name, *, low=0, high=None):
    """``value`` as an int in [low, high], else a TypeError or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)

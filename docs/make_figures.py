"""Draw the demo's figures for the documentation by playing every scene of ``crossent demo``.

    python docs/make_figures.py [OUT]      # default: docs/_generated

``conf.py`` calls :func:`main` at build time, so the pages always show the figures the current
code draws.
"""

from __future__ import annotations

import sys
from pathlib import Path

from crossent.demos import SCENES


def main(out):
    """Play every scene and write its PNG files into ``out``; return the paths written."""
    written = []
    for play in SCENES.values():
        written.extend(play().draw(out))
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "_generated"
    for path in main(target):
        print(path)

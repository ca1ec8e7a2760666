"""``python -m crossent``: the command line (the ``crossent`` script also catches Ctrl-C during
the import of the package itself: see ``_crossent_launcher``)."""

import sys

from .cli import main

sys.exit(main())

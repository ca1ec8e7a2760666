"""Run the doctests of every module of the installed crossent package (numpydoc ``Examples``).

Modules are found with pkgutil.walk_packages; the command line (``crossent.cli*``,
``crossent.__main__``) is exercised by its own tests, ``crossent.torch*`` needs torch, and a
module whose import needs a missing optional dependency is skipped with the reason.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
import pkgutil

import pytest

import crossent

# The core modules must carry examples: a module of public functions without any would pass vacuously.
MUST_HAVE_EXAMPLES = {"crossent.functional", "crossent.measures", "crossent.losses",
                      "crossent._backend"}


def _module_names():
    names = ["crossent"]
    for info in pkgutil.walk_packages(crossent.__path__, "crossent.", onerror=lambda name: None):
        name = info.name
        if name == "crossent.__main__" or name == "crossent.cli" or name.startswith("crossent.cli."):
            continue
        names.append(name)
    return sorted(set(names))


@pytest.mark.parametrize("name", _module_names())
def test_doctests(name):
    if (name == "crossent.torch" or name.startswith("crossent.torch.")) and importlib.util.find_spec("torch") is None:
        pytest.skip("crossent.torch needs torch")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        if exc.name and not exc.name.startswith("crossent"):
            pytest.skip(f"{name} needs the optional dependency {exc.name!r}")
        raise
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = io.StringIO()
    for test in finder.find(module, name, globs={}):
        runner.run(test, out=out.write)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} doctest failure(s) in {name}:\n{out.getvalue()}"
    if name in MUST_HAVE_EXAMPLES:
        assert results.attempted > 0, f"{name} has no doctested examples"

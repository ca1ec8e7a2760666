"""Sphinx configuration of the crossent documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (needs
``pip install ".[docs]"``). The demo's figures are drawn at build time by
``make_figures.py`` into ``docs/_generated``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import crossent

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_figures  # noqa: E402

make_figures.main(HERE / "_generated")


def _local_mathjax(static):
    """Copy MathJax 3 (from the ``django-static-mathjax`` package of the docs extra) under
    ``static/mathjax``, so the pages render math with no network: the combined TeX component,
    the fonts and the components it loads on demand."""
    try:
        import mathjax
    except ImportError as exc:
        raise ImportError("the documentation serves MathJax itself: pip install '.[docs]' "
                          "(django-static-mathjax)") from exc
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    target = static / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    for part in ("tex-mml-chtml.js", "output", "input", "ui", "a11y", "adaptors"):
        if not (target / part).exists():
            copy = shutil.copytree if (source / part).is_dir() else shutil.copy2
            copy(source / part, target / part)


_local_mathjax(HERE / "_generated" / "static")

# The PyTorch front's reference: generated from its docstrings where torch is importable.
_TORCH_NAMES = ["cross_entropy", "binary_cross_entropy_with_logits", "sigmoid_focal_loss",
                "softmax_focal_loss", "linear_cross_entropy", "vocab_parallel_cross_entropy",
                "vocab_parallel_linear_cross_entropy", "kl_div", "distillation_loss",
                "linear_distillation_loss", "vocab_parallel_distillation_loss", "CrossEntropyLoss",
                "KLDivLoss", "DistillationLoss", "LinearDistillationLoss"]
try:
    import crossent.torch  # noqa: F401
except ImportError:
    _torch_body = ("PyTorch was not installed when this site was built, so this page is empty; "
                   "``pip install torch`` and rebuild.\n")
else:
    _torch_body = (".. currentmodule:: crossent.torch\n\n.. autosummary::\n   :toctree: generated\n\n"
                   + "".join(f"   {name}\n" for name in _TORCH_NAMES))
_torch_page = "crossent.torch\n==============\n\n" + _torch_body
if not (HERE / "api" / "torch.rst").exists() or (HERE / "api" / "torch.rst").read_text() != _torch_page:
    (HERE / "api" / "torch.rst").write_text(_torch_page)

project = "crossent"
author = "the crossent developers"
copyright = "2026, the crossent developers"
version = release = crossent.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
exclude_patterns = ["_build", "_generated"]

html_theme = "pydata_sphinx_theme"
html_title = "crossent"
html_static_path = ["_static", "_generated/static"]
mathjax_path = "mathjax/tex-mml-chtml.js"
# the theme's colour mode (light, dark or the reader's system setting); it must be set
html_context = {"default_mode": "auto"}
html_favicon = "_static/favicon.svg"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False

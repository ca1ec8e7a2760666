"""The documentation: every ``>>>`` example of the pages runs and prints what the page says; the
site builds with warnings as errors; where Chromium is installed, every built page loads in it
with no console error, no broken internal link, every image rendered and every formula typeset
(and the check itself catches each of those faults on a hand-made site)."""

from __future__ import annotations

import doctest
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.rglob("*.rst"))
PAGES = [p for p in PAGES if "_build" not in p.parts and "generated" not in p.parts]


def test_tutorial_pages_exist():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"tutorial/entropy.rst", "tutorial/doors.rst", "tutorial/outputs.rst",
            "tutorial/gradients.rst", "tutorial/focal.rst", "tutorial/iris.rst",
            "install.rst", "cli.rst", "torch.rst", "performance.rst", "api/index.rst"} <= names


@pytest.mark.parametrize("page", [p for p in PAGES if ">>>" in p.read_text()],
                         ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_examples(page):
    pytest.importorskip("matplotlib")
    result = doctest.testfile(str(page), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0, f"{page.name}: {result.failed} of {result.attempted} examples failed"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("pydata_sphinx_theme")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(DOCS), str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.mark.slow
def test_site_builds_with_warnings_as_errors(built_site):
    for page in ("index.html", "tutorial/doors.html", "tutorial/focal.html", "cli.html",
                 "performance.html", "api/index.html",
                 "api/generated/crossent.softmax_cross_entropy.html",
                 "api/generated/crossent.models.SoftmaxRegression.html"):
        assert (built_site / page).is_file(), page
    focal = (built_site / "tutorial" / "focal.html").read_text()
    assert "focal.png" in focal and "average precision" in focal
    for png in ("neuron.png", "focal.png", "doors.png", "learning_curves.png"):
        assert (built_site / "_images" / png).stat().st_size > 20_000


@pytest.mark.slow
def test_site_in_headless_chromium(built_site):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("websocket")
    proc = subprocess.run([sys.executable, str(DOCS / "check_site.py"), str(built_site),
                           "--chromium", chromium], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " 0 problems" in proc.stdout
    summary = proc.stdout.strip().splitlines()[-1].split()
    assert int(summary[summary.index("formulas,") - 1]) > 50  # the math was there, and typeset


def _chromium_or_skip():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("websocket")
    return chromium


def test_browser_check_reports_each_kind_of_breakage(tmp_path):
    """The check can fail: a hand-made site with one of each fault is caught, fault by fault."""
    chromium = _chromium_or_skip()
    import base64
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_site", DOCS / "check_site.py")
    check_site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_site)
    # a 1x1 PNG, valid
    (tmp_path / "dot.png").write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="))
    head = '<head><link rel="icon" href="dot.png"></head>'
    (tmp_path / "index.html").write_text(
        f'<html>{head}<body><h1 id="top">ok</h1><img src="dot.png">'
        '<a href="good.html#here">fine</a><a href="https://example.org/">external</a></body></html>')
    (tmp_path / "good.html").write_text(f'<html>{head}<body><p id="here">x</p></body></html>')
    (tmp_path / "bad.html").write_text(
        f'<html>{head}<body><img src="missing.png"><a href="nowhere.html">x</a>'
        '<a href="good.html#gone">y</a><script>console.error("boom")</script>'
        '<script>undefined_function()</script><span class="math">\\(x^2\\)</span></body></html>')
    pages, n_links, n_images, n_math, problems = check_site.check(tmp_path, chromium)
    assert (pages, n_links, n_images, n_math) == (3, 3, 2, 1)
    bad = [p for p in problems if p.startswith("bad.html")]
    assert len(problems) == len(bad)  # index.html and good.html are clean
    text = "\n".join(bad)
    assert "image not rendered" in text and "missing.png" in text
    assert "broken link to nowhere.html" in text
    assert "good.html#gone: no such anchor" in text
    assert "console.error: boom" in text
    assert "undefined_function" in text  # the uncaught ReferenceError
    assert "404" in text  # the failed image load, reported by the browser's log
    assert "math not rendered: \\(x^2\\)" in text  # no MathJax on that page

"""The calculator commands (``crossent entropy | cross-entropy | kl | js``) through the real
entry point; expected values from SciPy and hand-checkable cases."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from crossent.cli import main

scipy_stats = pytest.importorskip("scipy.stats")
scipy_spatial = pytest.importorskip("scipy.spatial.distance")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def value(out: str) -> float:
    m = re.search(r"= (\S+) ", out)
    assert m, out
    return float(m.group(1))


def error_line(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossent: error: "), err
    return lines[0]


def test_entropy_of_a_fair_coin_is_one_bit(capsys):
    code, out, err = run(capsys, "entropy", "0.5", "0.5", "--base", "2")
    assert code == 0 and err == ""
    assert out.strip() == "H(p) = 1 bit"


@pytest.mark.parametrize("p", [[0.9, 0.1], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
def test_entropy_matches_scipy(capsys, p):
    code, out, _ = run(capsys, "entropy", "--p", ",".join(map(str, p)))
    assert code == 0
    assert value(out) == pytest.approx(scipy_stats.entropy(p), rel=1e-5, abs=1e-12)  # printed to 6 digits
    assert "nat" in out


def test_cross_entropy_kl_js_match_scipy(capsys):
    p, q = [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]
    args = ("--p", "0.8,0.1,0.1", "--q", "0.2,0.2,0.6")
    code, out, _ = run(capsys, "cross-entropy", *args, "--base", "2")
    assert code == 0 and "bits" in out
    expected = scipy_stats.entropy(p, base=2) + scipy_stats.entropy(p, q, base=2)  # H(p, q) = H(p) + KL
    assert value(out) == pytest.approx(expected, rel=1e-5)
    code, out, _ = run(capsys, "kl", *args)
    assert value(out) == pytest.approx(scipy_stats.entropy(p, q), rel=1e-5)
    code, out, _ = run(capsys, "js", *args, "--base", "2")
    assert value(out) == pytest.approx(scipy_spatial.jensenshannon(p, q, base=2) ** 2, rel=1e-5)


def test_disjoint_supports_js_is_one_bit_and_kl_is_infinite(capsys):
    code, out, _ = run(capsys, "js", "--p", "1,0", "--q", "0,1", "--base", "2")
    assert code == 0 and out.strip() == "JS(p, q) = 1 bit"
    code, out, _ = run(capsys, "kl", "--p", "1,0", "--q", "0,1")
    assert code == 0 and math.isinf(value(out))


def test_normalize_rescales_counts(capsys):
    code, out, _ = run(capsys, "entropy", "3", "1", "--normalize")
    assert code == 0
    assert value(out) == pytest.approx(scipy_stats.entropy([0.75, 0.25]), rel=1e-5)


@pytest.mark.parametrize("argv, expected", [
    (("entropy", "0.5", "0.6"), r"sums to 1\.1"),
    (("entropy", "--p", "1.5,-0.5"), r"outside \[0, 1\]"),
    (("entropy", "--", "1.5", "-0.5"), r"outside \[0, 1\]"),
    (("entropy", "1.5", "-0.5"), r"outside \[0, 1\]"),  # a negative number is a value, not an option
    (("entropy", "0.5", "0.5", "--bse", "2"), r"No such option: --bse \(Possible options: --base\)"),
    (("entropy", "0.5", "abc"), r"values: 'abc' is not a number"),
    (("entropy",), r"give the distribution either as arguments"),
    (("entropy", "0.5", "0.5", "--p", "0.5,0.5"), r"give the distribution either as arguments"),
    (("cross-entropy", "--p", "0.5,0.5", "--q", "0.2,0.3,0.5"), r"shape"),
    (("kl", "--p", "0.5,0.5", "--q", ""), r"--q: no numbers given"),
    (("js", "--p", "0.5,0.5", "--q", "0.5,0.5", "--base", "1"), r"base must differ from 1"),
    (("entropy", "0.5", "0.5", "--base", "-2"), r"base must be > 0"),
    (("kl", "--p", "0.5,0.5"), r"Missing option '--q'"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, expected):
    assert re.search(expected, error_line(capsys, *argv))


def test_real_entry_point_in_a_subprocess():
    res = subprocess.run([sys.executable, "-m", "crossent", "cross-entropy", "--p", "0.8,0.1,0.1",
                          "--q", "0.2,0.2,0.6"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    expected = scipy_stats.entropy([0.8, 0.1, 0.1]) + scipy_stats.entropy([0.8, 0.1, 0.1], [0.2, 0.2, 0.6])
    assert value(res.stdout) == pytest.approx(expected, rel=1e-5)
    bad = subprocess.run([sys.executable, "-m", "crossent", "entropy", "0.5", "0.7"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("argv, expected", [
    (("entropy", "0.5", "0.5", "--bsae", "2"), r"^crossent: error: No such option: --bsae \(Possible options: --base\)$"),
    (("entropy", "--normalise", "1", "3"), r"^crossent: error: No such option: --normalise \(Possible options: --normalize\)$"),
    (("entropy", "0.5", "0.5", "-x"), r"^crossent: error: No such option: -x$"),
    (("entropy", "-0.5", "1.5"), r"^crossent: error: p\[0\] = -0\.5 is outside \[0, 1\]"),
])
def test_entropy_tells_unknown_options_from_values(capsys, argv, expected):
    """``--bsae 2`` was reported as "values: '--bsae' is not a number"."""
    assert re.search(expected, error_line(capsys, *argv))


@pytest.mark.parametrize("argv", [
    ("entropy", "1e308", "1e308", "--normalize"),
    ("kl", "--p", "1e308,1e308", "--q", "1e308,1e307", "--normalize"),
])
def test_normalize_of_huge_values_is_exact_and_quiet(argv):
    """The row sum overflowed: 0.0 and a RuntimeWarning on stderr. Expected: H = ln 2, and the
    KL divergence of (1/2, 1/2) from (10/11, 1/11) written out."""
    res = subprocess.run([sys.executable, "-m", "crossent", *argv], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    expected = math.log(2) if argv[0] == "entropy" else \
        0.5 * math.log(0.5 / (10 / 11)) + 0.5 * math.log(0.5 / (1 / 11))
    assert value(res.stdout) == pytest.approx(expected, rel=1e-5)

"""crossent.cli.main and the ``crossent`` console script: Ctrl-C at any moment, optional
dependencies that are missing, warnings kept off a failing command's one line.

Each case runs the installed entry point (read from the package metadata, as the console
script does) in a fresh interpreter. Missing packages and Ctrl-C during an import are
simulated by a meta-path hook placed before the entry point is imported, not by uninstalling.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

INTERRUPTED = "crossent: interrupted\n"


def _entry_point_code() -> str:
    """Python that runs the ``crossent`` console script's entry point, as its wrapper does."""
    (ep,) = importlib.metadata.entry_points(group="console_scripts", name="crossent")
    module, func = ep.value.split(":")
    return f"import sys\nfrom {module} import {func}\nsys.exit({func}())\n"


def _hook(action: str, names) -> str:
    """A meta-path finder that, on importing one of ``names`` (or a submodule), raises:
    ``missing`` a ModuleNotFoundError as for an absent package, ``interrupt`` a
    KeyboardInterrupt as Ctrl-C landing during that import would; ``signal`` sends the
    process a real SIGINT at the start of that import (once), then lets the import go on;
    ``signal-to-import-error`` turns what the SIGINT raises into an ImportError."""
    return textwrap.dedent(f"""\
        import os, signal, sys
        class _Hook:
            names = {tuple(names)!r}
            def find_spec(self, name, path=None, target=None):
                if name in self.names or name.split(".")[0] in self.names:
                    if {action!r} in ("signal", "signal-to-import-error"):
                        self.names = ()
                        try:
                            os.kill(os.getpid(), signal.SIGINT)
                            os.getpid()  # the handler runs by now
                        except BaseException as exc:  # as NumPy's C import turns it
                            if {action!r} == "signal-to-import-error":
                                raise ImportError("the import failed") from exc
                            raise
                        return None
                    if {action!r} == "interrupt":
                        raise KeyboardInterrupt
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None
        sys.meta_path.insert(0, _Hook())
        """)


def crossent(*argv, hook="", env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", hook + _entry_point_code(), *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _table(path, rows=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    label = np.where(x[:, 0] + 0.3 * rng.normal(size=rows) > 0, "yes", "no")
    path.write_text("f1,f2,label\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, label)))
    return path


# ----------------------------------------------------------------------------- Ctrl-C (item 17)
@pytest.mark.parametrize("module, argv", [
    *[(m, ("entropy", "0.5", "0.5")) for m in ("numpy", "crossent._backend", "crossent.measures",
                                               "crossent.cli", "typer", "crossent.cli.calculator")],
    ("typer", ("entropy", "--help")), ("crossent.cli.calculator_commands", ("entropy", "--help")),
    ("rich.console", ("demo", "--help")), ("_crossent_launcher.commands", ("--help",)),
])
def test_ctrl_c_during_start_up_imports_is_one_line_exit_130(module, argv):
    """Ctrl-C while the command imports (the package itself included) printed a
    KeyboardInterrupt traceback and died of SIGINT. (A plain calculator call imports neither
    Typer nor Rich: it looks Typer up, which the hook interrupts too.)"""
    res = crossent(*argv, hook=_hook("interrupt", [module]))
    assert (res.returncode, res.stdout, res.stderr) == (130, "", INTERRUPTED)


def test_ctrl_c_turned_into_an_import_error_during_start_up_is_one_line_exit_130():
    """NumPy's C import turned a Ctrl-C during it into an ImportError: the command died with
    that error (exit 1) instead of the interrupted line."""
    res = crossent("entropy", "0.5", "0.5", hook=_hook("signal-to-import-error", ["numpy"]))
    assert (res.returncode, res.stdout, res.stderr) == (130, "", INTERRUPTED)


def test_ctrl_c_at_any_moment_is_one_line_exit_130(tmp_path):
    """A real SIGINT at several moments: during start-up, or while training runs (it exited 130
    with nothing on stderr). Training is given epochs enough never to finish first."""
    data = _table(tmp_path / "d.csv")
    for delay in (0.6, 1.2, 2.5):  # after the interpreter itself has started
        proc = subprocess.Popen([sys.executable, "-c", _entry_point_code(), "train", str(data),
                                 "--target", "label", "--solver", "gd", "--epochs", "100000000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert (proc.returncode, out, err) == (130, "", INTERRUPTED), delay


def test_ctrl_c_while_pyarrow_imports_pandas_is_not_lost(tmp_path):
    """pyarrow's first ``to_numpy`` imports pandas from C++ and drops any exception raised
    during that import: Ctrl-C landing there (about a second into ``crossent train``) was lost
    and training went on. A real SIGINT is sent here at the start of that import."""
    data = _table(tmp_path / "d.csv")
    res = crossent("train", data, "--target", "label", "--solver", "gd", "--epochs", "5",
                   hook=_hook("signal", ["pandas"]))
    assert (res.returncode, res.stdout, res.stderr) == (130, "", INTERRUPTED)


def test_main_turns_ctrl_c_into_one_line(capsys, monkeypatch):
    """In-process callers of main() get the same line and status (Typer alone turned Ctrl-C
    into a silent exit 130), and their own SIGINT handler back."""
    from crossent.cli import calculator, main

    def interrupted(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(calculator, "_show", interrupted)
    before = signal.getsignal(signal.SIGINT)
    assert main(["entropy", "0.5", "0.5"]) == 130
    assert capsys.readouterr() == ("", INTERRUPTED)
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_swallowed_by_the_command_is_raised_again(capsys, monkeypatch):
    """Code that the command runs can swallow the interrupt (pyarrow drops exceptions raised
    while it imports pandas from C++): the command ran on, here a loop standing for training.
    main raises the interrupt again until it reaches main."""
    from crossent.cli import calculator, main

    ran_on = []

    def swallows_then_runs_on(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)
        except BaseException:
            pass
        for _ in range(1000):  # 10 s unless interrupted again
            time.sleep(0.01)
        ran_on.append(True)

    monkeypatch.setattr(calculator, "_show", swallows_then_runs_on)
    before = signal.getsignal(signal.SIGINT)
    assert main(["entropy", "0.5", "0.5"]) == 130
    assert capsys.readouterr() == ("", INTERRUPTED)
    assert ran_on == [] and signal.getsignal(signal.SIGINT) is before


# ----------------------------------------------------------------------------- start-up (issue 13)
_MODULES_AT_EXIT = "import atexit, sys\natexit.register(lambda: print(sorted(sys.modules)))\n"


@pytest.mark.parametrize("argv, absent", [
    ((), ("crossent", "numpy", "typer", "pydantic", "rich")),
    (("--help",), ("crossent", "numpy", "typer", "pydantic", "rich")),
    (("entropy", "0.5", "0.5", "--base", "2"), ("typer", "pydantic", "rich")),
    (("cross-entropy", "--p", "0.8,0.1,0.1", "--q", "0.2,0.2,0.6", "--normalize"),
     ("typer", "pydantic", "rich")),
])
def test_help_and_calculator_start_without_heavy_imports(argv, absent):
    """``crossent --help`` imported NumPy, the compiled kernels, Typer and pydantic (0.4 s of
    CPU); the calculator imported Typer, pydantic and Rich to compute one number."""
    res = crossent(*argv, hook=_MODULES_AT_EXIT)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    imported = {name.split(".")[0] for name in eval(res.stdout.strip().splitlines()[-1])}
    assert imported.isdisjoint(absent), imported & set(absent)


def test_plain_score_and_compare_start_without_typer(tmp_path):
    """A plain ``crossent score`` imported Typer (45 ms of a 0.8 s run on 10M rows) only to
    find its own function; its options are declared without Typer now. A call that is not
    plain (``--label=y``) still goes through Typer, with the same result."""
    preds = tmp_path / "p.csv"
    preds.write_text("a,b,y\n0.2,0.8,b\n0.6,0.4,a\n0.3,0.7,a\n")
    plain = crossent("score", preds, "--label", "y", "--json", hook=_MODULES_AT_EXIT)
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
    out, modules = plain.stdout.strip().splitlines()
    assert {name.split(".")[0] for name in eval(modules)}.isdisjoint({"typer", "pydantic", "rich"})
    via_typer = crossent("score", preds, "--label=y", "--json", hook=_MODULES_AT_EXIT)
    assert via_typer.returncode == 0, via_typer.stderr
    typer_out, typer_modules = via_typer.stdout.strip().splitlines()
    assert "typer" in {name.split(".")[0] for name in eval(typer_modules)}
    assert typer_out == out
    compare = crossent("compare", preds, preds, "--label", "y", hook=_MODULES_AT_EXIT)
    assert compare.returncode == 0, compare.stderr
    assert "typer" not in {name.split(".")[0] for name in eval(compare.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("columns", ["50", "60", "80", "132"])
def test_top_level_help_is_the_one_typer_prints(capsys, monkeypatch, columns):
    """The help printed without Typer, from the command table, is Typer's own, at any width
    (Click wraps at the terminal's width, at most 78 columns)."""
    from _crossent_launcher.commands import COMMANDS, top_help

    from crossent.cli import _register
    from crossent.cli._app import app

    monkeypatch.setenv("COLUMNS", columns)
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        _register(module, skip_missing=False)
    app(args=["--help"], prog_name="crossent", standalone_mode=False)
    typer_head, typer_rows = capsys.readouterr().out.split("Commands:\n")
    head, rows = (top_help() + "\n").split("Commands:\n")
    assert head == typer_head
    # Typer lists the commands in the order their modules were imported (here, by earlier tests)
    assert sorted(rows.splitlines()) == sorted(typer_rows.splitlines())
    assert [row.split()[0] for row in rows.splitlines()] == list(COMMANDS)


def test_plain_calculator_calls_print_what_typer_prints(capsys):
    """A plain call is computed without Typer; written with ``--option=value`` the same call
    goes through Typer: the lines are the same."""
    from crossent.cli import main

    for fast, typer_path in [
        (["entropy", "0.5", "0.5", "--base", "2"], ["entropy", "0.5", "0.5", "--base=2"]),
        (["entropy", "--p", "3,1", "--normalize"], ["entropy", "--p=3,1", "--normalize"]),
        (["kl", "--p", "1,0", "--q", "0,1"], ["kl", "--p=1,0", "--q=0,1"]),
        (["js", "--p", "0.5,0.5", "--q", "0.2,0.8", "--base", "10"], ["js", "--p=0.5,0.5", "--q=0.2,0.8", "--base=10"]),
        (["entropy", "0.5", "0.7"], ["entropy", "0.5", "0.7", "--base=2.718281828459045"]),
    ]:
        results = []
        for argv in (fast, typer_path):
            code = main(argv)
            results.append((code, *capsys.readouterr()))
        assert results[0] == results[1], (fast, results)
        assert results[0][1] or results[0][2].startswith("crossent: error: ")


# ----------------------------------------------------------------------------- warnings (item 18)
def test_failing_command_prints_its_error_line_only(tmp_path):
    """``train --solver gd --learning-rate 1e6`` put RuntimeWarnings before its error line."""
    data = _table(tmp_path / "d.csv")
    res = crossent("train", data, "--target", "label", "--solver", "gd", "--learning-rate", "1e6")
    assert res.returncode == 2 and res.stdout == "", res.stderr
    assert res.stderr.startswith("crossent: error: training diverged") and res.stderr.count("\n") == 1


def test_warning_of_a_successful_command_is_one_line(tmp_path):
    """Without the compiled kernels the library warns once (it still works): one line."""
    data = _table(tmp_path / "d.csv")
    env = {k: v for k, v in os.environ.items() if k != "CROSSENT_KERNELS"}  # the default path
    res = crossent("train", data, "--target", "label", "--solver", "gd", "--epochs", "5",
                   hook=_hook("missing", ["crossent._ext"]), env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("crossent: warning: crossent's compiled kernels are unavailable")
    assert res.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- missing extras (item 25)
@pytest.mark.parametrize("blocked", ["typer", "rich"])
@pytest.mark.parametrize("argv", [("score", "p.csv", "--label", "y"), ("entropy", "0.5", "0.5"),
                                  ("--help",), ()], ids=["score", "entropy", "help", "bare"])
def test_without_the_cli_extra_the_command_says_what_to_install(blocked, argv):
    """Without typer or rich, ``crossent score`` died with a ModuleNotFoundError traceback."""
    res = crossent(*argv, hook=_hook("missing", [blocked]))
    who = f"'crossent {argv[0]}'" if argv and not argv[0].startswith("-") else "the crossent command"
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (f"crossent: error: {who} needs the package '{blocked}', which is not "
                          f"installed: pip install 'crossent[cli]'\n")


def test_a_command_missing_its_dependency_fails_alone(tmp_path):
    """Without pyarrow, score says so in one line; the calculator and the help still work."""
    hook = _hook("missing", ["pyarrow"])
    preds = tmp_path / "p.csv"
    preds.write_text("a,b,y\n0.5,0.5,a\n")
    res = crossent("score", preds, "--label", "y", hook=hook)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "pyarrow" in res.stderr and "pip install 'crossent[cli]'" in res.stderr
    ok = crossent("entropy", "0.5", "0.5", "--base", "2", hook=hook)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "H(p) = 1 bit\n", "")
    help_ = crossent("--help", hook=hook)
    assert help_.returncode == 0 and "entropy" in help_.stdout


# ----------------------------------------------------------------------------- plain calls (issue 13)
@pytest.mark.parametrize("args", [
    ["p.csv", "--label", "y", "--help"],
    ["p.csv", "--label=y"],
    ["p.csv", "--label", "y", "--bins", "0"],  # below the declared minimum: Typer's message
    ["p.csv", "--label", "y", "--bins", "1_0"],
    ["p.csv", "--label", "y", "--label", "z"],
    ["p.csv", "--label", "y", "--no-such-option"],
    ["p.csv"],  # --label is required
    ["p.csv", "q.csv", "--label", "y"],
    ["p.csv", "--label", "y", "--clip", "-0.1"],
    ["p.csv", "--label"],
])
def test_calls_that_are_not_plain_are_left_to_typer(args):
    from crossent.cli._plain import plain_arguments
    from crossent.cli.score import score_cmd

    assert plain_arguments(score_cmd, args) is None


def test_plain_arguments_are_the_ones_typer_passes():
    """Defaults, flags, numbers, paths and lists as Typer gives them to the command."""
    from pathlib import Path

    from crossent.cli._plain import plain_arguments
    from crossent.cli.score import compare_cmd, score_cmd

    kwargs = plain_arguments(score_cmd, ["p.csv", "-l", "y", "--bins", "7", "--clip", "1e-3", "--json"])
    assert kwargs == dict(pred=Path("p.csv"), label="y", truth=None, id=None, classes=None, weight=None,
                          multilabel=False, logits=False, normalize=False, clip=1e-3, bins=7,
                          as_json=True, plot=None, batch_size=1 << 18, workers=None, scheduler=None)
    kwargs = plain_arguments(compare_cmd, ["a.csv", "b.csv", "c.csv", "--label", "y", "--confidence", "0.9"])
    assert kwargs["preds"] == [Path("a.csv"), Path("b.csv"), Path("c.csv")] and kwargs["confidence"] == 0.9

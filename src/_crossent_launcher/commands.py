"""The commands of ``crossent`` and the top-level help, without importing the package.

``crossent`` and ``crossent --help`` print the list of commands: importing ``crossent``
(NumPy, the compiled kernels) and Typer (pydantic) to print it took most of a second of
start-up, so the list is written here, in the layout Typer (Click) gives it, and
``crossent.cli`` registers the commands on its Typer application from the same table.
tests/test_cli.py checks that this help is the one Typer prints, at several terminal widths.
"""

import importlib.util
import shutil
import textwrap

__all__ = ["APP_HELP", "COMMANDS", "top_help", "require_cli_extra"]

APP_HELP = "Cross-entropy done exactly and fast: train models with it, compare models by it."

# name: (the module of crossent.cli that registers the command, the first paragraph of its help)
COMMANDS = {
    "entropy": ("calculator_commands", "Entropy H(p) = -sum p log p of one distribution."),
    "cross-entropy": ("calculator_commands", "Cross-entropy H(p, q) = -sum p log q."),
    "kl": ("calculator_commands", "Kullback-Leibler divergence D(p || q) = H(p, q) - H(p)."),
    "js": ("calculator_commands", "Jensen-Shannon divergence (symmetric, at most 1 bit)."),
    "score": ("score", "Cross-entropy (nats, bits), perplexity, accuracy, Brier score, "
                       "calibration of a prediction file."),
    "compare": ("score", "Metrics side by side and, for each pair, the difference in "
                         "cross-entropy with a paired bootstrap confidence interval and a verdict "
                         "in plain words."),
    "bench": ("bench", "Time crossent against PyTorch, SciPy and the memory floors, side by side."),
    "demo": ("demo", "Show why cross-entropy is the loss of classifiers, one scene at a time: a "
                     "saturated neuron, dense detection with focal loss, the doors tables, and "
                     "softmax regression on Iris. Each scene prints a table and a two-line verdict "
                     "and writes its plots to --out."),
    "train": ("train", "Fit softmax regression on a table (numeric features, standardised) and "
                       "write predictions that 'crossent score' reads. With --model, predict with "
                       "a saved model instead."),
}


# Packages of the cli extra that every command needs.
_CLI_EXTRA = ("typer", "rich")


def require_cli_extra() -> None:
    """Raise ModuleNotFoundError naming the first package of the cli extra that is missing.

    The packages are looked up, not imported: the help and the calculator, which need neither,
    still fail without them as every command does.
    """
    for name in _CLI_EXTRA:
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def top_help(width=None) -> str:
    """The help of ``crossent`` (no trailing newline), ``width`` columns wide (default: the
    terminal's, at most 80, as Click lays it out)."""
    if width is None:
        width = max(min(shutil.get_terminal_size().columns, 80) - 2, 50)
    lines = [_fill("[OPTIONS] COMMAND [ARGS]...", width, "Usage: crossent "), "",
             _fill(APP_HELP, width, "  "), "", "Options:"]
    lines += _definitions([("--help", "Show this message and exit.")], width)
    longest = max(map(len, COMMANDS))
    rows = [(name, _short(text, width - 6 - longest)) for name, (_, text) in COMMANDS.items()]
    lines += ["", "Commands:"] + _definitions(rows, width)
    return "\n".join(lines)


def _fill(text: str, width: int, indent: str) -> str:
    return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=" " * len(indent),
                         replace_whitespace=False)


def _definitions(rows, width: int) -> list:
    """Click's definition list, indented by 2: the terms in a column of at most 30."""
    column = min(max(len(term) for term, _ in rows), 30) + 2
    out = []
    for term, text in rows:
        lines = textwrap.wrap(text, max(width - column - 2, 10), replace_whitespace=False)
        pad = " " * (column - len(term)) if len(term) <= column - 2 else "\n" + " " * (column + 2)
        out.append(f"  {term}{pad}{lines[0]}")
        out += [" " * (column + 2) + line for line in lines[1:]]
    return out


def _short(text: str, limit: int) -> str:
    """Click's short help: the first sentence, or the words that fit in ``limit`` and '...'."""
    words = text.split()
    total = 0
    for i, word in enumerate(words):
        total += len(word) + (i > 0)
        if total > limit:
            break
        if word.endswith("."):
            return " ".join(words[:i + 1])
        if total == limit and i != len(words) - 1:
            break
    else:
        return " ".join(words)
    total += 3
    while i > 0:
        total -= len(words[i]) + (i > 0)
        if total <= limit:
            break
        i -= 1
    return " ".join(words[:i]) + "..."

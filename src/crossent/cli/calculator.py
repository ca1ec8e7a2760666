"""The calculator: ``crossent entropy | cross-entropy | kl | js`` on distributions typed in.

    crossent entropy 0.5 0.5 --base 2
    crossent cross-entropy --p 0.8,0.1,0.1 --q 0.2,0.2,0.6

Typer-free: a plain call (values, ``--p``, ``--q``, ``--base`` with a plain number,
``--normalize``) is parsed by :func:`run` and computed without importing Typer (and pydantic),
so the calculator starts in about the time of importing NumPy. Anything else (``--help``, an
unknown or repeated option, a negative number, a missing option) goes to the Typer commands of
:mod:`crossent.cli.calculator_commands`, which print Typer's help and usage messages and call
the same functions here.
"""

from __future__ import annotations

import math
import re
from typing import Optional, Sequence

from ._errors import CliError

__all__: list[str] = []

#: Each two-distribution command: (symbol, name of the measure in crossent.measures).
TWO_DISTRIBUTIONS = {
    "cross-entropy": ("H(p, q)", "cross_entropy"),
    "kl": ("D(p || q)", "kl_divergence"),
    "js": ("JS(p, q)", "js_divergence"),
}
# A number as --base may be written on the fast path; anything else is Typer's to convert.
_PLAIN_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _parse(option: str, text: str):
    """Numbers separated by commas or spaces, e.g. '0.8,0.1,0.1'."""
    import numpy as np

    values = []
    for item in text.replace(",", " ").split():
        try:
            values.append(float(item))
        except ValueError:
            raise CliError(f"{option}: {item!r} is not a number") from None
    if not values:
        raise CliError(f"{option}: no numbers given")
    return np.array(values)


def _unit(base: Optional[float], value: float) -> str:
    names = {2: ("bit", "bits"), 10: ("hartley", "hartleys")}
    one, many = names.get(base, ("nat", "nats") if base in (None, math.e) else
                          (f"log-base-{base:g} unit", f"log-base-{base:g} units"))
    return one if value == 1 else many


def _show(symbol: str, value, base: Optional[float]) -> None:
    v = float(value)
    print(f"{symbol} = {v:.6g} {_unit(base, v)}")


def entropy(values: Optional[Sequence[str]], p: Optional[str], base: Optional[float],
            normalize: bool) -> None:
    """``crossent entropy``: H(p) of the distribution given as values or as ``--p``."""
    from .. import measures

    if (values is None or not values) == (p is None):
        raise CliError("give the distribution either as arguments (0.5 0.5) or as --p 0.5,0.5")
    dist = _parse("--p", p) if p is not None else _parse("values", " ".join(values))
    _show("H(p)", measures.entropy(dist, base=base, normalize=normalize), base)


def two_distributions(name: str, p: str, q: str, base: Optional[float], normalize: bool) -> None:
    """``crossent cross-entropy | kl | js``: the measure of ``--p`` and ``--q``."""
    from .. import measures

    symbol, measure = TWO_DISTRIBUTIONS[name]
    pv, qv = _parse("--p", p), _parse("--q", q)
    _show(symbol, getattr(measures, measure)(pv, qv, base=base, normalize=normalize), base)


def run(args: Sequence[str]) -> bool:
    """Run a plain calculator call ``args`` (the command name first); False, having done
    nothing, when ``args`` is not one (Typer then parses it)."""
    name, rest = args[0], list(args[1:])
    options = {"--p": None, "--q": None, "--base": None}
    if name == "entropy":
        del options["--q"]
    elif name not in TWO_DISTRIBUTIONS:
        return False
    values, normalize = [], False
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            values.append(token)
        elif token == "--normalize" and not normalize:
            normalize = True
        elif token in options and options[token] is None and rest and not rest[0].startswith("-"):
            options[token] = rest.pop(0)
        else:  # --help, '--', --name=value, a repeated or unknown option, a negative number
            return False
    base = options["--base"]
    if base is not None and not _PLAIN_NUMBER.fullmatch(base):
        return False
    base = None if base is None else float(base)
    if name == "entropy":
        entropy(values, options["--p"], base, normalize)
        return True
    if values or options["--p"] is None or options["--q"] is None:
        return False
    two_distributions(name, options["--p"], options["--q"], base, normalize)
    return True

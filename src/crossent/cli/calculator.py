"""The calculator: ``crossent entropy | cross-entropy | kl | js`` on distributions typed in.

    crossent entropy 0.5 0.5 --base 2
    crossent cross-entropy --p 0.8,0.1,0.1 --q 0.2,0.2,0.6
"""

from __future__ import annotations

import difflib
import math
from typing import List, Optional

import numpy as np
import typer

from .. import measures
from ._app import CliError, app, console

__all__: list[str] = []

_BASE = typer.Option(None, "--base", help="Logarithm base: 2 for bits, e or omitted for nats.")
_NORMALIZE = typer.Option(False, "--normalize", help="Rescale each distribution to sum to 1.")


def _parse(option: str, text: str) -> np.ndarray:
    """Numbers separated by commas or spaces, e.g. '0.8,0.1,0.1'."""
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
    console.print(f"{symbol} = {v:.6g} {_unit(base, v)}")


def _pair(p: str, q: str):
    return _parse("--p", p), _parse("--q", q)


def _check_no_options(ctx: typer.Context, values: List[str]) -> None:
    """The values may look like options (a negative number reaches the range check, which
    names it), but a word such as ``--bsae`` is an unknown option, reported as one."""
    for item in values:
        if item.startswith("-") and not _is_number(item):
            known = [o for param in ctx.command.params for o in param.opts if o.startswith("--")]
            close = difflib.get_close_matches(item, known, n=3)
            hint = f" (Possible options: {', '.join(close)})" if close else ""
            raise CliError(f"No such option: {item}{hint}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Unknown options are let through to the values (so that -0.5 is a value, reported by the
# range check), then told apart from numbers by _check_no_options.
@app.command("entropy", context_settings={"ignore_unknown_options": True})
def entropy_cmd(
    ctx: typer.Context,
    values: Optional[List[str]] = typer.Argument(None, help="Probabilities, e.g. 0.5 0.5."),
    p: Optional[str] = typer.Option(None, "--p", help="Probabilities, comma-separated."),
    base: Optional[float] = _BASE,
    normalize: bool = _NORMALIZE,
) -> None:
    """Entropy H(p) = -sum p log p of one distribution."""
    _check_no_options(ctx, values or [])
    if (values is None or not values) == (p is None):
        raise CliError("give the distribution either as arguments (0.5 0.5) or as --p 0.5,0.5")
    dist = _parse("--p", p) if p is not None else _parse("values", " ".join(values))
    _show("H(p)", measures.entropy(dist, base=base, normalize=normalize), base)


def _two_distribution_command(name, symbol, measure, doc, p_help, q_help):
    """Register ``crossent NAME --p ... --q ...`` printing ``symbol = measure(p, q)``."""

    def command(
        p: str = typer.Option(..., "--p", help=p_help),
        q: str = typer.Option(..., "--q", help=q_help),
        base: Optional[float] = _BASE,
        normalize: bool = _NORMALIZE,
    ) -> None:
        pv, qv = _pair(p, q)
        _show(symbol, measure(pv, qv, base=base, normalize=normalize), base)

    command.__doc__ = doc
    app.command(name)(command)


_two_distribution_command("cross-entropy", "H(p, q)", measures.cross_entropy,
                          "Cross-entropy H(p, q) = -sum p log q.",
                          "True distribution, comma-separated.",
                          "Predicted distribution, comma-separated.")
_two_distribution_command("kl", "D(p || q)", measures.kl_divergence,
                          "Kullback-Leibler divergence D(p || q) = H(p, q) - H(p).",
                          "First distribution, comma-separated.",
                          "Second distribution, comma-separated.")
_two_distribution_command("js", "JS(p, q)", measures.js_divergence,
                          "Jensen-Shannon divergence (symmetric, at most 1 bit).",
                          "First distribution, comma-separated.",
                          "Second distribution, comma-separated.")

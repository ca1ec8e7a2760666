"""The calculator's Typer commands: help, usage errors and every call that
:func:`crossent.cli.calculator.run` leaves to Typer; the work is the calculator's."""

from __future__ import annotations

import difflib
from typing import List, Optional

import typer
from _crossent_launcher.commands import COMMANDS

from . import calculator
from ._app import Argument, CliError, Option, command

__all__: list[str] = []

_BASE = Option(None, "--base", help="Logarithm base: 2 for bits, e or omitted for nats.")
_NORMALIZE = Option(False, "--normalize", help="Rescale each distribution to sum to 1.")


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
@command("entropy", help=COMMANDS["entropy"][1], context_settings={"ignore_unknown_options": True})
def entropy_cmd(
    ctx: typer.Context,
    values: Optional[List[str]] = Argument(None, help="Probabilities, e.g. 0.5 0.5."),
    p: Optional[str] = Option(None, "--p", help="Probabilities, comma-separated."),
    base: Optional[float] = _BASE,
    normalize: bool = _NORMALIZE,
) -> None:
    """``crossent entropy`` (its help is the command table's)."""
    _check_no_options(ctx, values or [])
    calculator.entropy(values, p, base, normalize)


def _two_distribution_command(name, p_help, q_help):
    """Register ``crossent NAME --p ... --q ...`` (its help is the command table's)."""

    def fn(
        p: str = Option(..., "--p", help=p_help),
        q: str = Option(..., "--q", help=q_help),
        base: Optional[float] = _BASE,
        normalize: bool = _NORMALIZE,
    ) -> None:
        calculator.two_distributions(name, p, q, base, normalize)

    command(name, help=COMMANDS[name][1])(fn)


_two_distribution_command("cross-entropy", "True distribution, comma-separated.",
                          "Predicted distribution, comma-separated.")
_two_distribution_command("kl", "First distribution, comma-separated.",
                          "Second distribution, comma-separated.")
_two_distribution_command("js", "First distribution, comma-separated.",
                          "Second distribution, comma-separated.")

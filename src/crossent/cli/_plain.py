"""Plain calls of a command, parsed without Typer (its import, and its runtime's pydantic).

Typer builds a pydantic validator for every parameter of the command it runs: importing pydantic
and building them took a quarter of a second, more than reading a million rows. A *plain* call
uses only what needs no validator: ``--name value`` and flags declared in the command's
signature, positional arguments, strings, paths, plain decimal numbers within the declared
``min``/``max``. :func:`plain_arguments` turns such a call into the keyword arguments Typer would
pass; anything else (``--help``, ``--name=value``, an unknown, repeated or missing option, a
number out of range or written otherwise, a parameter with a callback or an environment
variable) gives None, and Typer parses the call, with its messages.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Optional, Sequence

from ._app import Param

__all__ = ["plain_arguments"]

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# Parameter settings a plain call cannot honour: each must keep its default.
_UNSUPPORTED = ("callback", "envvar", "parser", "default_factory", "is_eager", "prompt", "count",
                "exists", "resolve_path", "allow_dash", "path_type", "writable", "clamp", "mode",
                "formats")


def plain_arguments(command, args: Sequence[str]) -> Optional[dict]:
    """The keyword arguments of ``command`` (a registered command's function, its parameters
    declared with :func:`crossent.cli._app.Option` and ``Argument``) for the call ``args``
    (after the command's name), or None when the call is not plain."""
    hints = typing.get_type_hints(command)
    params = inspect.signature(command).parameters
    options, positional, kwargs = {}, [], {}
    for name, param in params.items():
        info = param.default
        if not isinstance(info, Param) or any(getattr(info, a, None) for a in _UNSUPPORTED):
            return None
        if info.kind == "Option":
            if any("/" in decl or not decl.startswith("-") for decl in info.param_decls):
                return None
            options.update(dict.fromkeys(info.param_decls, name))
        else:
            positional.append(name)
        kwargs[name] = info.default
    given, words = set(), []
    rest = list(args)
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            words.append(token)
            continue
        name = options.get(token)
        if name is None or name in given:
            return None
        given.add(name)
        kind, _ = _kind(hints[name])
        if kind is bool:
            if kwargs[name] is not False:
                return None
            kwargs[name] = True
            continue
        if not rest or rest[0].startswith("-"):
            return None
        kwargs[name] = rest.pop(0)
    for name in positional:  # a list takes every remaining word
        if not words:
            break
        _, many = _kind(hints[name])
        kwargs[name], words = (words, []) if many else (words[0], words[1:])
        given.add(name)
    if words or any(value is Ellipsis for value in kwargs.values()):
        return None  # a word too many, or a required parameter missing
    for name in given:
        value = _convert(kwargs[name], hints[name], params[name].default)
        if value is None:
            return None
        kwargs[name] = value
    return kwargs


def _kind(annotation):
    """(the type of one value, whether a list of them) of ``Optional[X]``, ``List[X]`` or X."""
    many = False
    while typing.get_origin(annotation) is not None:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            return None, False
        many |= typing.get_origin(annotation) is list
        annotation = inner[0]
    return annotation, many


def _convert(value, annotation, info):
    """``value`` (a word, or a list of words) as ``annotation``; None if it is not plain."""
    kind, many = _kind(annotation)
    if many:
        values = [_convert_one(v, kind, info) for v in value]
        return None if any(v is None for v in values) else values
    return _convert_one(value, kind, info)


def _convert_one(word, kind, info):
    if kind is bool:
        return word if isinstance(word, bool) else None
    if kind is str:
        return word
    if kind is Path:
        return Path(word)
    if kind in (int, float):
        if not (_INT if kind is int else _FLOAT).fullmatch(word):
            return None
        number = kind(word)
        low, high = getattr(info, "min", None), getattr(info, "max", None)
        if (low is not None and number < low) or (high is not None and number > high):
            return None
        return number
    return None

"""Check a command line against its command's signature before the command runs.

python-fire calls the command first and complains about leftover flags
afterwards, and hands a mistyped value (``--L abc``, ``--L 2.7``, a bare
``--L``) to the command as whatever it parses to. So every flag and value is
checked here, from the signature and its annotations, before any work starts.
Flags follow fire's spellings: ``--name value``, ``--name=value``, ``-`` or
``_`` between words, ``--noname`` for a false switch, a one-letter shortcut,
positional values, and anything after a lone ``--`` left to fire.
"""
from __future__ import annotations

import difflib
import inspect
import math
import re
import typing
from fractions import Fraction
from typing import Callable

from fire.parser import DefaultParseValue

HELP_FLAGS = ("-h", "--help")


class CommandLineError(ValueError):
    """A flag or value the command would have misread; the message names it."""


def check_command_line(commands: dict[str, Callable], argv: list[str], minimum: dict[str, int]) -> None:
    """Raise CommandLineError for an unknown command or flag or an ill-typed value in ``argv`` (no program name).

    Integer flags must be at least 1 unless ``minimum`` names another floor;
    float flags must be positive and finite. Help requests are left to fire.
    """
    args = argv[: len(argv) - argv[::-1].index("--") - 1] if "--" in argv else argv
    if not args or args[0].startswith("-") or any(arg in HELP_FLAGS for arg in args):
        return
    name, args = args[0], args[1:]
    if name not in commands:
        raise CommandLineError(f"unknown command {name}{_suggestion(name, list(commands))}")
    fn = commands[name]
    params = list(inspect.signature(fn).parameters)
    hints = typing.get_type_hints(fn)
    given, positional = _split(args, params)
    unfilled = [param for param in params if param not in {key for key, _, _ in given}]
    if len(positional) > len(unfilled):
        raise CommandLineError(f"unexpected argument {positional[len(unfilled)]!r}: "
                               f"every parameter of {name} already has a value")
    given += [(param, param, token) for param, token in zip(unfilled, positional)]
    for param, spelled, token in given:
        if param in hints:
            _check_value(f"--{spelled}", token, hints[param], minimum.get(param, 1))
        elif token is None:  # unannotated parameters take values, never fire's bare True
            raise CommandLineError(f"--{spelled} needs a value")


def _split(args: list[str], params: list[str]) -> tuple[list[tuple[str, str, str | None]], list[str]]:
    """(param, flag as spelled, raw value or None for a bare flag) per flag, and the positional values."""
    given, positional, i = [], [], 0
    while i < len(args):
        arg, i = args[i], i + 1
        if not _is_flag(arg):
            positional.append(arg)
            continue
        spelled, equals, token = arg.lstrip("-").partition("=")
        if not equals:
            token = None
            if i < len(args) and not _is_flag(args[i]):
                token, i = args[i], i + 1
        key = spelled.replace("-", "_")
        if token is None and key not in params and key.startswith("no") and key[2:] in params:
            given.append((key[2:], spelled, "False"))  # fire's --noswitch
        else:
            given.append((_param_for(key, spelled, params), spelled, token))
    return given, positional


def _param_for(key: str, spelled: str, params: list[str]) -> str:
    """The parameter a flag names: its own name, or fire's one-letter shortcut for a unique initial."""
    if key in params:
        return key
    names = [param if "_" in spelled else param.replace("_", "-") for param in params]
    initials = [name for name in names if name[0] == key] if len(key) == 1 else []
    if len(initials) == 1:
        return params[names.index(initials[0])]
    if initials:
        raise CommandLineError(f"flag -{key} is ambiguous: it could be {' or '.join('--' + n for n in initials)}")
    raise CommandLineError(f"unknown flag --{spelled}{_suggestion(spelled, names, '--')}")


def _suggestion(word: str, choices: list[str], prefix: str = "") -> str:
    """' (did you mean X?)' for the closest choice, else the list of them all."""
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f" (did you mean {prefix}{close[0]}?)"
    return f"; expected one of {', '.join(prefix + choice for choice in choices)}"


def _is_flag(arg: str) -> bool:
    """fire's rule: a leading hyphen makes a flag, except on a negative number."""
    return arg.startswith("--") or re.match(r"^-[a-zA-Z]", arg) is not None


def _check_value(flag: str, token: str | None, annotation, minimum: int) -> None:
    """Refuse a value that fire would pass to a parameter of this annotation as something else."""
    members = typing.get_args(annotation) or (annotation,)
    kind = next(member for member in members if member is not type(None))
    value = True if token is None else DefaultParseValue(token)
    if value is None and type(None) in members:
        return
    if kind is bool:
        if not isinstance(value, bool):
            raise CommandLineError(f"{flag} is a switch: give {flag} alone (or --no{flag[2:]}), got {token!r}")
    elif token is None or value is None:
        raise CommandLineError(f"{flag} needs a value")
    elif kind is int and not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise CommandLineError(f"{flag} must be {expected}, got {token!r}")
    elif kind is float and not _positive_number(value):
        raise CommandLineError(f"{flag} must be a positive number (or a fraction such as 8/255), got {token!r}")
    elif kind is dict and not isinstance(value, dict):
        raise CommandLineError(f'{flag} must be a mapping such as "{{key: value}}", got {token!r}')


def number(value) -> float:
    """A float flag's value as python-fire gives it: a number, or text such as "8/255" or "5e-5"."""
    return float(Fraction(value) if isinstance(value, str) else value)


def _positive_number(value) -> bool:
    if isinstance(value, bool):
        return False
    try:
        parsed = number(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    return math.isfinite(parsed) and parsed > 0

"""How `dealbooks ... --help` names what a command takes, as click does: an argument by its
name in capitals (`[NAME]` when it may be left out, `NAME...` when it repeats), a value by its
metavar or its type (TEXT, INTEGER, FLOAT), a choice by its choices (`[a|b]`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand

F = TypeVar("F", bound=Callable[..., Any])
_TYPE = re.compile(r"<([^<>]+)>")
_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "list[str]": "TEXT"}


def _value(match: re.Match[str]) -> str:
    label = match.group(1).removesuffix(" range")
    return f"[{label}]" if "|" in label else _TYPES.get(label, label.upper())


def _argument(param: Any) -> str:
    name = str(param.metavar or param.name or "").upper()
    return name + ("..." if param.nargs != 1 else "")


class Command(TyperCommand):
    """A command whose usage line and help name its arguments and values as click does."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            names, text = record
            if isinstance(param, TyperArgument):
                kind = param.display_type(ctx)
                choices = " " + _TYPE.sub(_value, kind) if "|" in kind else ""
                arguments.append((_argument(param) + choices, text))
            else:
                options.append((_TYPE.sub(_value, names), text))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class Typer(typer.Typer):
    """typer.Typer whose commands are `Command`s."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs["cls"] = kwargs.get("cls") or Command
        return super().command(*args, **kwargs)

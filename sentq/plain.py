"""The fast way into a command: argv read against a table generated from the command's Typer declaration, so
`sentq status JOB` runs without importing Typer (Typer and the pydantic it coerces values with cost ~200 ms, more
than the command itself).

There is one declaration of each command's options: its Typer signature in sentq.commands. A command declared with
a ``body`` (a function of sentq.terminal taking the options by name) gets a row in sentq/plain_table.py, written
from that declaration by ``python -m sentq.plain`` (``make cli-table``); tests/test_cli.py fails when the table is
stale and checks that every command line read here gets exactly the values Typer would give it. A command line this
reader does not fully understand (``--help``, an unknown or repeated option, a value that looks like an option or
that Typer might read differently, ``--``, ``-oFILE``) goes to Typer as it is, so both ways behave alike.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A parameter's row: (name, kind, opts, type, default, envvar, required); kind is "argument", "flag" or "option",
# type "str", "int", "float" or "path" ("bool" for a flag). A command's row: (body as "module:function", parameters).
Param = tuple[str, str, tuple[str, ...], str, Any, str | None, bool]
Table = dict[str, tuple[str, tuple[Param, ...]]]

_NUMBER = {"int": re.compile(r"[0-9]+"), "float": re.compile(r"[0-9]+(\.[0-9]+)?")}


def convert(kind: str, raw: str) -> Any:
    """``raw`` as a value of ``kind``, or KeyError where Typer alone should decide (it may read it differently)."""
    if kind == "str":
        return raw
    if kind == "path":
        if not raw:
            raise KeyError(raw)
        return Path(raw)
    if not _NUMBER[kind].fullmatch(raw):
        raise KeyError(raw)
    return int(raw) if kind == "int" else float(raw)


def read(argv: list[str], table: Table | None = None) -> tuple[str, dict[str, Any]] | None:
    """``argv`` (without the program) as (body, keyword arguments), or None: Typer reads it."""
    if table is None:
        from sentq.plain_table import COMMANDS

        table = COMMANDS
    if not argv or argv[0] not in table:
        return None
    body, params = table[argv[0]]
    arguments = [p for p in params if p[1] == "argument"]
    by_opt = {opt: p for p in params if p[1] != "argument" for opt in p[2]}
    given: dict[str, Any] = {}
    positional: list[str] = []
    rest = argv[1:]
    try:
        while rest:
            arg = rest.pop(0)
            if arg == "-" or not arg.startswith("-"):
                positional.append(arg)
                continue
            opt, eq, value = arg.partition("=")
            param = by_opt[opt]  # --help, "--", -oFILE, an unknown option: KeyError
            name, kind, _, type_, _, _, _ = param
            if name in given:
                return None  # repeated: Typer keeps the last, and says nothing; let it
            if kind == "flag":
                if eq:
                    return None
                given[name] = True
                continue
            if not eq:
                if not rest or (rest[0].startswith("-") and rest[0] != "-"):
                    return None
                value = rest.pop(0)
            elif not opt.startswith("--"):
                return None  # -o=FILE: click reads "=FILE"
            given[name] = convert(type_, value)
        if len(positional) > len(arguments):
            return None
        for (name, _, _, type_, _, _, _), value in zip(arguments, positional, strict=False):
            given[name] = convert(type_, value)
        for name, _, _, type_, default, envvar, required in params:
            if name in given:
                continue
            if required:
                return None
            raw = os.environ.get(envvar) if envvar else None
            given[name] = convert(type_, raw) if raw else default  # click: an empty variable is unset
    except KeyError:
        return None
    return body, given


def resolve(body: str) -> Callable[..., Any]:
    module, _, name = body.partition(":")
    func: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return func


# ----- the table, from the Typer declarations -----


def table_of(app: Any) -> Table:
    """The rows of every command of ``app`` (a Typer app) declared with a body, from the click command Typer builds:
    exactly the options, names, kinds and defaults Typer's own parser accepts."""
    import typer.main

    group = typer.main.get_command(app)
    found: Table = {}
    for info in app.registered_commands:
        body = getattr(info.callback, "sentq_body", None)
        if body is None:
            continue
        name = info.name or info.callback.__name__
        command = group.commands[name]  # type: ignore[attr-defined]
        params: list[Param] = []
        for p in command.params:
            annotation = p.type_descriptor.annotation
            type_ = {str: "str", int: "int", float: "float", Path: "path", bool: "bool"}.get(annotation)
            if type_ is None or p.nargs != 1 or p.multiple or p.secondary_opts:
                raise ValueError(f"`sentq {name}`: option {p.name} ({annotation}) has no plain reading")
            if p.param_type_name == "argument":
                kind, opts = "argument", ()
            else:
                kind, opts = ("flag" if p.is_flag else "option"), tuple(p.opts)
            if (kind == "flag") != (type_ == "bool") or (kind == "flag" and p.default is not False):
                raise ValueError(f"`sentq {name}`: {p.name} must be a flag defaulting to False, or not a bool")
            envvar = p.envvar if isinstance(p.envvar, str) else None
            params.append((p.name, kind, opts, type_, p.default, envvar, p.required))
        found[name] = (f"{body.__module__}:{body.__name__}", tuple(params))
    return found


def source(table: Table) -> str:
    """sentq/plain_table.py for ``table``."""
    lines = [
        '"""Generated by `python -m sentq.plain` (make cli-table) from the Typer declarations in sentq.commands: the',
        "commands sentq.plain reads without Typer. Do not edit; tests/test_cli.py fails when it is stale.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "COMMANDS: dict[str, tuple[str, tuple[tuple[str, str, tuple[str, ...], str, Any, str | None, bool], ...]]] = {",
    ]
    for name, (body, params) in sorted(table.items()):
        lines.append(f"    {literal(name)}: (")
        lines.append(f"        {literal(body)},")
        if len(params) == 1:  # as ruff formats a one-element tuple
            lines.append(f"        ({literal(params[0])},),")
        else:
            lines.append("        (")
            lines += [f"            {literal(param)}," for param in params]
            lines.append("        ),")
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def literal(value: Any) -> str:
    """``value`` as Python source the way ruff formats it (double quotes), so the generated file passes lint."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    raise ValueError(f"no literal for {value!r}")


TABLE_PATH = Path(__file__).with_name("plain_table.py")


def main() -> None:
    from sentq.commands import app

    TABLE_PATH.write_text(source(table_of(app)))
    print(f"wrote {TABLE_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()

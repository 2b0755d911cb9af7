"""The command line's one declaration: the plain reader's table is the Typer signatures', every command line it reads
gets exactly the values Typer gives it, and sentq/ has no import cycle (the faces share sentq.terminal)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentq import plain
from sentq.commands import app
from sentq.plain_table import COMMANDS

SENTQ_DIR = Path(plain.__file__).parent


def test_the_table_is_generated_from_the_typer_declarations() -> None:
    assert plain.TABLE_PATH.read_text() == plain.source(plain.table_of(app)), "stale: run `make cli-table`"
    with_body = {info.name or info.callback.__name__ for info in app.registered_commands if info.callback.sentq_body}
    assert set(COMMANDS) == with_body == {"submit", "wait", "status", "cancel"}


def typer_reads(argv: list[str]) -> dict[str, Any] | None:
    """The values Typer's own parser gives ``argv`` (None: it refuses it)."""
    command = typer.main.get_command(app).commands[argv[0]]  # type: ignore[attr-defined]
    try:
        with command.make_context(argv[0], list(argv[1:])) as ctx:
            return dict(ctx.params)
    except (typer.Exit, SystemExit, Exception):  # noqa: B014 - click's usage errors, Typer's coercion errors
        return None


# Words a command line is made of: the command's own options, values that read alike or not (numbers, paths, things
# that look like options), and some that are no option of it at all.
VALUES = ["-", "", "x.txt", "job1", "12", "007", "2.5", "-3", "1e3", "1_000", " 4", "r.csv"]
OTHERS = ["--help", "--", "--limit=5", "--timeout=0.5", "-o=out.csv", "-oout.csv", "--wait=1", "--nope", "--json"]


def words_of(name: str) -> list[str]:
    return sorted({opt for p in COMMANDS[name][1] for opt in p[2]}) + VALUES + OTHERS


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(COMMANDS)), chunk_env=st.sampled_from([None, "", "300", "lots"]))
def test_every_line_read_plainly_gets_what_typer_gives(data: st.DataObject, name: str, chunk_env: str | None) -> None:
    argv = [name, *data.draw(st.lists(st.sampled_from(words_of(name)), max_size=6))]
    with pytest.MonkeyPatch.context() as env:
        if chunk_env is None:
            env.delenv("SENTQ_CHUNK_SIZE", raising=False)
        else:
            env.setenv("SENTQ_CHUNK_SIZE", chunk_env)
        found = plain.read(argv)
        if found is None:
            return  # Typer reads it, whatever it makes of it
        body, values = found
        assert body == COMMANDS[name][0]
        assert typer_reads(argv) == values, argv


@pytest.mark.parametrize(
    ("argv", "values"),
    [
        (["status"], {"job_id": None, "as_json": False, "limit": 20}),
        (["status", "abc", "--json", "--limit", "3"], {"job_id": "abc", "as_json": True, "limit": 3}),
        (["status", "--limit=7"], {"job_id": None, "as_json": False, "limit": 7}),
        (["submit", "-", "--wait", "-o", "r.csv"], {"path": "-", "wait": True, "output": Path("r.csv")}),
        (["wait", "j", "--timeout", "2.5"], {"job_id": "j", "timeout": 2.5, "output": None}),
        (["cancel", "j"], {"job_id": "j"}),
    ],
)
def test_plain_lines(argv: list[str], values: dict[str, Any]) -> None:
    found = plain.read(argv)
    assert found is not None
    assert found[1].items() >= values.items()


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--help"],
        ["status", "a", "b"],
        ["status", "--limit", "lots"],
        ["status", "--json", "--json"],
        ["submit"],
        ["submit", "f", "-ofile"],
        ["submit", "f", "--chunk-size", "-5"],
        ["submit", "f", "--output", ""],
        ["wait", "j", "--", "x"],
        ["retry", "j"],
        [],
    ],
)
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert plain.read(argv) is None


def imports_of(path: Path) -> set[str]:
    """The sentq modules ``path`` imports anywhere in it (at the top or inside a function)."""
    modules = {".".join(p.relative_to(SENTQ_DIR.parent).with_suffix("").parts) for p in SENTQ_DIR.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules and name != "sentq"}  # the package itself is everyone's


def test_no_import_cycle_in_sentq() -> None:
    graph = {}
    for path in SENTQ_DIR.rglob("*.py"):
        name = ".".join(path.relative_to(SENTQ_DIR.parent).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = imports_of(path) - {name}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join([*path, module, dep])}"
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert "sentq.terminal" in graph["sentq.cli"] and "sentq.terminal" in graph["sentq.commands"]
    assert not graph["sentq.terminal"] & {"sentq.cli", "sentq.commands", "sentq.plain"}

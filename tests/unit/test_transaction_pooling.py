"""The services run behind PgBouncer in transaction pooling mode (docs/operations.md,
"PgBouncer"), where a session's state does not follow it from one transaction to the
next. asyncpg keeps some on the session whatever the statement cache says: `prepare()`
and `cursor()` create named prepared statements (PgBouncer before 1.21 refuses a name
another client prepared on the same server connection), and `add_listener()` a LISTEN.
None of them may appear in the services' code; an SQL cursor (`DECLARE`, `FETCH`) in a
transaction is the way to read later what a statement saw."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((*ROOT.glob("services/**/*.py"), *ROOT.glob("libs/**/*.py")))
SESSION_BOUND = frozenset({"prepare", "cursor", "add_listener"})


def session_bound_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SESSION_BOUND
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.func.attr}()")
    return found


def test_the_sources_are_found() -> None:
    assert any(p.name == "unit_of_work.py" for p in SOURCES)


def test_no_statement_keeps_state_on_the_session() -> None:
    offending = [call for path in SOURCES for call in session_bound_calls(path)]
    assert offending == []

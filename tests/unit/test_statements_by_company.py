"""Every SQL statement of the services' repositories names its company (docs/distribution.md):
it filters or joins by company_id, or only inserts rows that carry it. The statements that
span companies by design (background sweeps, one failure-path lookup) are listed here
with why; any other statement without company_id fails this test, named by its file and
first line. Read from the source: the SQL strings of every repository module."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from tests.support.distribution import REFERENCE_TABLES

ROOT = Path(__file__).resolve().parents[2]
FILES = [*sorted(ROOT.glob("services/*/repository/*.py")), ROOT / "libs/common/idempotency.py"]

STATEMENT = re.compile(r"^\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\b")
TABLE = re.compile(r"\b(?:pool|billing|credits|provisioning)\.[a-z_]+\b|\{table\}")
FILTERED = re.compile(r"\bcompany_id\s*(=|IN\b)")

# (file, a phrase of the statement): why it reads or writes across companies.
ACROSS_COMPANIES = {
    ("services/pool/repository/records.py", "WHERE state = 'PENDING' AND expires_at <= $1"): (
        "the hold-expiry sweep finds due holds of every company, then expires them per company"
    ),
    ("services/billing/repository/purchases.py", "SELECT company_id, request_id FROM billing"): (
        "the recovery finds interrupted purchases of every company, then resumes each one"
    ),
    ("services/billing/repository/plans.py", "WHERE office_id = $1 LIMIT 1"): (
        "only when a company has no active plan for the office: whether another company's"
        " plans name it (OFFICE_NOT_FOUND rather than NO_ACTIVE_PLAN)"
    ),
    ("services/provisioning/repository/operations.py", "lease_until <= now()"): (
        "the recovery finds unfinished pool operations of every company"
    ),
    ("services/provisioning/repository/imports.py", "WHERE state = 'RUNNING'"): (
        "the recovery finds running imports of every company"
    ),
    ("libs/common/idempotency.py", "created_at < now()"): (
        "the purge drops request ids past their retention, of every company"
    ),
}


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal of the module; an f-string's placeholders
    read as the module's string of that name (column lists), or as {name}."""
    module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    tree = ast.parse(path.read_text())
    parts: set[int] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = ""
            for value in node.values:
                parts.add(id(value))
                if isinstance(value, ast.Constant):
                    text += str(value.value)
                elif isinstance(value, ast.FormattedValue):
                    name = ast.unparse(value.value)
                    named = getattr(module, name, None)
                    text += named if isinstance(named, str) else "{" + name + "}"
            found.append((node.lineno, text))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            found.append((node.lineno, node.value))
    return found


def statements() -> list[tuple[str, int, str]]:
    found = []
    for path in FILES:
        for line, text in sql_strings(path):
            tables = set(TABLE.findall(text))
            if STATEMENT.match(text) and tables and not tables <= REFERENCE_TABLES:
                found.append((str(path.relative_to(ROOT)), line, text))
    return found


def names_its_company(text: str) -> bool:
    if FILTERED.search(text):
        return True
    # A statement that only inserts (no WHERE, no join) writes rows that carry company_id.
    inserts = re.match(r"\s*(INSERT|WITH)\b", text) is not None and "INSERT" in text
    return inserts and "company_id" in text and not re.search(r"\b(WHERE|JOIN|USING)\b", text)


def test_every_repository_statement_names_its_company() -> None:
    found = statements()
    assert len(found) > 100  # the services' SQL, not an empty scan
    unnamed = []
    for path, line, text in found:
        if names_its_company(text):
            continue
        if any(path == p and phrase in text for p, phrase in ACROSS_COMPANIES):
            continue
        unnamed.append(f"{path}:{line}: {' '.join(text.split())[:120]}")
    assert unnamed == [], "statements without company_id:\n" + "\n".join(unnamed)


def test_every_statement_listed_as_across_companies_still_exists() -> None:
    found = statements()
    for path, phrase in ACROSS_COMPANIES:
        assert any(p == path and phrase in text for p, _, text in found), (path, phrase)


def test_a_statement_without_company_id_is_caught() -> None:
    assert not names_its_company("SELECT unit_id FROM pool.units WHERE unit_id = $1")
    assert not names_its_company("UPDATE pool.units SET state = $2 WHERE hold_id = $1")
    assert not names_its_company(
        "SELECT company_id FROM pool.holds h JOIN pool.units u ON u.hold_id = h.hold_id"
    )
    assert not names_its_company("SELECT company_id, unit_id FROM pool.units")
    assert names_its_company("DELETE FROM pool.units WHERE company_id = $1 AND unit_id = $2")
    assert names_its_company("INSERT INTO pool.pools (company_id, currency) VALUES ($1, $2)")

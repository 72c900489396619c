"""The rules of the product stay plain Python: `services/*/domain/` imports nothing
from the wire, the database, generated code, or the layers above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = sorted(ROOT.glob("services/*/domain"))

# Module prefixes a domain module may not import.
FORBIDDEN = (
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "grpc_status",
    "google.protobuf",
    "google.rpc",
    "asyncpg",
    "sqlalchemy",
    "alembic",
    "licensing",  # generated code
    "opentelemetry",
)
# Layers of a service above its domain.
FORBIDDEN_LAYERS = ("repository", "use_cases", "api", "adapters", "unit_of_work", "app", "service")


def imports_of(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def forbidden(name: str) -> bool:
    if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
        return True
    parts = name.split(".")
    return len(parts) >= 3 and parts[0] == "services" and parts[2] in FORBIDDEN_LAYERS


def test_every_service_has_a_domain() -> None:
    assert [d.parent.name for d in DOMAINS] == ["billing", "credits", "pool", "provisioning"]


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.parent.name)
def test_domain_imports_no_wire_database_or_upper_layer(domain: Path) -> None:
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in domain.rglob("*.py")
        for name in imports_of(path)
        if forbidden(name)
    }
    assert not offending


def test_the_check_catches_what_it_forbids() -> None:
    assert forbidden("grpc.aio")
    assert forbidden("asyncpg")
    assert forbidden("licensing.pool.v1.pool_pb2")
    assert forbidden("services.pool.repository")
    assert forbidden("services.billing.use_cases.purchases")
    assert not forbidden("services.pool.domain.model")
    assert not forbidden("libs.common.errors")


def test_importing_every_domain_loads_no_wire_or_database_module() -> None:
    """Also what the domain imports indirectly (through libs/common, say)."""
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for domain in DOMAINS
        for path in sorted(domain.rglob("*.py"))
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(name for name in loaded if forbidden(name)) == []

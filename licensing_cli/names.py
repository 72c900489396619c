"""Names for people: tables show an office's name (and a plan's) instead of a bare UUID.

Names live with the offices in the pool (and with the plans in billing); a command that
shows office ids reads the company's offices once and labels each id with its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from licensing.pool.v1 import pool_pb2
from licensing_cli.clients import Clients
from licensing_cli.options import EVERY_PAGE
from licensing_cli.pages import Listed, listed


def offices_of(clients: Clients, company: str, currency: str = "") -> list[pool_pb2.Office]:
    """Every office of the company (of the currency, when given), oldest first."""
    pool = clients.pool
    found: Listed[pool_pb2.Office] = listed(
        pool,
        pool.stub.ListOffices,
        pool_pb2.ListOfficesRequest(company_id=company, currency=currency),
        "offices",
        EVERY_PAGE,
    )
    return sorted(
        found.items, key=lambda o: (o.create_time.seconds, o.create_time.nanos, o.office_id)
    )


@dataclass
class OfficeNames:
    """Office id -> name, read once per command."""

    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, clients: Clients, company: str) -> OfficeNames:
        return cls({o.office_id: o.display_name for o in offices_of(clients, company)})

    def label(self, office_id: str) -> str:
        """`Tokyo (6f1d8e5a)`, or the id when the office has no name."""
        name = self.names.get(office_id, "")
        return f"{name} ({office_id[:8]})" if name else office_id

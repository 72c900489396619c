"""Offices as the pool knows them (docs/product.md, "Companies, offices and plans").

Billing registers offices with `PutOffice`. An office id belongs to one company for good;
an office's currency may change only while it has no live units (units never cross
currencies); and an office of a currency whose pool is on cannot go on a legacy plan
(`pools.check_plan`).
"""

from __future__ import annotations

import uuid

from services.pool.domain import errors
from services.pool.domain.model import Office


def check_owner(office: Office, owner: uuid.UUID | None) -> None:
    """Another company's office id is answered as if it did not exist."""
    if owner is not None and owner != office.company_id:
        raise errors.office_not_found(office.office_id)


def changes_currency(current: Office | None, office: Office) -> bool:
    return current is not None and current.currency != office.currency


def check_currency_change(office: Office, has_live_units: bool) -> None:
    """An office with live units keeps its currency."""
    if has_live_units:
        raise errors.office_has_units(office.office_id)

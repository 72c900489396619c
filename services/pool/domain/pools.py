"""Pools (docs/product.md, "Pools"): one per (company, currency), switched on once, for
bundle plans only.

Enabling is one-way and all-or-nothing: every office of the currency takes part, and it
is refused while any of them is on a legacy plan. A pool cannot be switched off again,
and once it is on no office of its currency may move to a legacy plan.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from libs.common.errors import DomainError
from libs.common.license_catalog import LicenseType
from services.pool.domain import errors
from services.pool.domain.model import Office, PlanKind, Pool


def check_enable(pool: Pool, legacy_office_ids: Sequence[uuid.UUID]) -> None:
    """Refuses a pool already on, and a currency with offices on legacy plans."""
    if pool.enabled:
        raise errors.pool_already_enabled(pool.currency)
    if legacy_office_ids:
        raise errors.legacy_plan_in_currency(pool.currency, legacy_office_ids)


def disable_refusal(pool: Pool) -> DomainError:
    """Why a pool cannot be disabled: enabling is irreversible, or it never was on."""
    if pool.enabled:
        return errors.pool_irreversible(pool.currency)
    return errors.pool_not_enabled(pool.currency)


def check_plan(office: Office, pool: Pool) -> None:
    """An office of a currency whose pool is on cannot be put on a legacy plan."""
    if office.plan_kind is PlanKind.LEGACY and pool.enabled:
        raise errors.legacy_plan_in_currency(office.currency, [office.office_id])


def poolable_types(catalog: Mapping[str, LicenseType]) -> list[str]:
    """The license types whose units may rest in a pool (the catalog says)."""
    return [code for code, entry in catalog.items() if entry.poolable]

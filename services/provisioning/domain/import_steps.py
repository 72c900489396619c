"""How an import's rows become pool calls: one step per license type and chunk of rows.

Steps are a pure function of the planned rows and the chunk size, both stored with the
import, so a re-run derives exactly the same steps, and with them the same request_ids:
the pool replays what it already did instead of doing it twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.provisioning.domain import catalog
from services.provisioning.domain.csv_import import PlannedRow
from services.provisioning.domain.model import Failure

# What a rule of the account that refused the final write means for the import.
_CONFLICTS = {
    "licenses_ext_key": "DUPLICATE_EXT_KEY",
    "licenses_number": "DUPLICATE_NUMBER",
    "licenses_one_per_user_and_type": "DUPLICATE_USER",
}


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    license_type: str
    rows: tuple[int, ...]  # row numbers, ascending


def steps(rows: Sequence[PlannedRow], chunk_size: int) -> list[Step]:
    """New Phone System licenses first, then each add-on type in catalog order."""
    ordered = sorted(rows, key=lambda r: r.row)
    by_type: list[tuple[str, list[int]]] = [
        (catalog.PHONE_SYSTEM, [r.row for r in ordered if r.license_id is None])
    ]
    for addon in catalog.of_category(catalog.BASE_ADDON):
        by_type.append((addon.code, [r.row for r in ordered if addon.code in r.new_addons]))
    result: list[Step] = []
    for code, numbers in by_type:
        for start in range(0, len(numbers), chunk_size):
            result.append(Step(len(result), code, tuple(numbers[start : start + chunk_size])))
    return result


def new_bases(
    base_steps: Sequence[tuple[Step, Sequence[uuid.UUID]]],
) -> dict[int, uuid.UUID]:
    """Row number -> its new Phone System license: a hold's sorted units pair with the
    step's ascending rows (the order in which Commit pairs units with assignees)."""
    result: dict[int, uuid.UUID] = {}
    for step, unit_ids in base_steps:
        for row, unit_id in zip(step.rows, sorted(unit_ids), strict=True):
            result[row] = unit_id
    return result


def base_of(row: PlannedRow, new: Mapping[int, uuid.UUID]) -> uuid.UUID:
    return row.license_id if row.license_id is not None else new[row.row]


def request_id(company_id: uuid.UUID, import_id: str, *parts: object) -> str:
    """A deterministic pool request_id for one call of an import (at most 128 chars)."""
    digest = hashlib.sha256(f"{company_id}/{import_id}".encode()).hexdigest()[:24]
    return "import-" + digest + "-" + "-".join(str(p) for p in parts)


def conflict_failure(constraint: str) -> Failure:
    """The failure of an import whose final write a rule of the account refused (an
    extension, number or license of the file was taken while it ran): nothing applied."""
    return Failure(
        _CONFLICTS.get(constraint, "ACCOUNT_CHANGED"),
        "the account changed while importing (an extension, number or license "
        "of the file was taken meanwhile); nothing was applied",
        {"constraint": constraint},
    )

"""Base licenses and their add-ons, extensions and numbers, and termination.

Assigning a license and adding add-ons take pool units: they are pool operations
(`use_cases/operations.py`). Unassigning, reassigning, removing add-ons and terminating
call the pool first (with request_ids derived from ours, so a retry replays them), then
write locally in one transaction that also records the response (`handlers.once`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from libs.common.errors import FailedPrecondition, required
from libs.common.idempotency import IdempotencyKey
from libs.common.reasons import Reason
from services.provisioning.adapters.pool import PoolGateway
from services.provisioning.domain import errors, rules
from services.provisioning.domain.extensions import number_key
from services.provisioning.domain.model import License, Subscription
from services.provisioning.domain.peers import AssigneeKind
from services.provisioning.domain.pool_operation import (
    OperationKind,
    Plan,
    PoolOperation,
    Reservation,
)
from services.provisioning.unit_of_work import ProvisioningUnitOfWork, Tx
from services.provisioning.use_cases.operations import LocalUndo, PoolOperations
from services.provisioning.use_cases.users import get_user, peer_request_id, user_of


@dataclass(frozen=True, slots=True)
class AssignLicense:
    key: IdempotencyKey
    company_id: uuid.UUID
    user_id: uuid.UUID
    license_type: str


@dataclass(frozen=True, slots=True)
class LicenseCommand:
    """A change to one license (UnassignLicense, TerminateLicense)."""

    key: IdempotencyKey
    company_id: uuid.UUID
    license_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ReassignLicense:
    key: IdempotencyKey
    company_id: uuid.UUID
    license_id: uuid.UUID
    user_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ChangeAddons:
    """Add-on types to add to (or remove from) a base license."""

    key: IdempotencyKey
    company_id: uuid.UUID
    license_id: uuid.UUID
    addon_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SetExtension:
    key: IdempotencyKey
    company_id: uuid.UUID
    license_id: uuid.UUID
    ext_key: str | None
    number: str | None


@dataclass(frozen=True, slots=True)
class SearchLicenses:
    company_id: uuid.UUID
    office_id: uuid.UUID | None
    license_type: str | None
    user_id: uuid.UUID | None
    ext_prefix: str | None
    number: str | None
    after: tuple[datetime, uuid.UUID] | None
    limit: int


@dataclass(frozen=True, slots=True)
class AddonsRemoved:
    license: License
    returned_unit_ids: list[uuid.UUID]


async def license_of(tx: Tx, company_id: uuid.UUID, license_id: uuid.UUID) -> License:
    found = await tx.licenses.get_license(company_id, license_id)
    return required(found, errors.license_not_found, license_id)


async def get_license(
    uow: ProvisioningUnitOfWork, company_id: uuid.UUID, license_id: uuid.UUID
) -> License:
    async with uow.reading() as tx:
        return await license_of(tx, company_id, license_id)


async def search_licenses(uow: ProvisioningUnitOfWork, query: SearchLicenses) -> list[License]:
    code = rules.search_type(query.license_type, query.ext_prefix, query.number)
    async with uow.stale_reading() as tx:
        return await tx.licenses.search_licenses(
            query.company_id,
            query.office_id,
            code,
            query.user_id,
            query.ext_prefix,
            number_key(query.number) if query.number else None,
            query.after,
            query.limit,
        )


# --- assigning: a pool operation ---------------------------------------------------------


async def assign_license(
    command: AssignLicense, uow: ProvisioningUnitOfWork, operations: PoolOperations
) -> bytes:
    async def prepare() -> Plan:
        user = await get_user(uow, command.company_id, command.user_id)
        async with uow.reading() as tx:
            if await tx.licenses.user_has_type(
                command.company_id, command.user_id, command.license_type
            ):
                raise errors.already_has_license(command.user_id, command.license_type)
        return Plan(
            OperationKind.ASSIGN_LICENSE,
            user.office_id,
            (Reservation(command.license_type, ((AssigneeKind.USER, str(command.user_id)),)),),
        )

    async def write(tx: Tx, now: datetime, op: PoolOperation) -> License:
        (unit_id,) = op.units(0)
        held = License(
            unit_id,
            command.company_id,
            op.plan.office_id,
            command.license_type,
            command.user_id,
            None,
            None,
            (),
            now,
            now,
        )
        await tx.licenses.insert_license(held)
        return await license_of(tx, command.company_id, unit_id)

    return await operations.run(command.key, prepare, write)


async def undo_assign_license(tx: Tx, now: datetime, op: PoolOperation) -> None:
    (unit_id,) = op.units(0)
    await tx.licenses.delete_license(op.company_id, unit_id)


# --- add-ons: adding is a pool operation -------------------------------------------------


async def add_addons(
    command: ChangeAddons, uow: ProvisioningUnitOfWork, operations: PoolOperations
) -> bytes:
    """All or nothing: every add-on type is held first; only if all can be held are they
    assigned to the base license, otherwise the holds are released (units back exactly
    as they were) and NO_LICENSE_AVAILABLE names the missing type."""

    async def prepare() -> Plan:
        held = await get_license(uow, command.company_id, command.license_id)
        rules.addons_to_add(held, command.addon_types)
        base = ((AssigneeKind.BASE_LICENSE, str(command.license_id)),)
        return Plan(
            OperationKind.ADD_ADDONS,
            held.office_id,
            tuple(Reservation(code, base) for code in command.addon_types),
            args={
                "license_id": str(command.license_id),
                "updated_at": held.updated_at.isoformat(),
            },
        )

    async def write(tx: Tx, now: datetime, op: PoolOperation) -> License:
        addons = [
            (op.units(index)[0], command.license_id, reservation.license_type)
            for index, reservation in enumerate(op.plan.reservations)
        ]
        await tx.licenses.insert_addons(command.company_id, addons, now)
        await tx.licenses.touch_license(command.company_id, command.license_id, now)
        found = await tx.licenses.get_license(command.company_id, command.license_id)
        if found is None:
            raise errors.license_changed()
        return found

    return await operations.run(command.key, prepare, write)


async def undo_add_addons(tx: Tx, now: datetime, op: PoolOperation) -> None:
    """The license is as it was: without the add-ons, and when it last changed."""
    units = [op.units(index)[0] for index in range(len(op.plan.reservations))]
    await tx.licenses.delete_addons(op.company_id, units)
    await tx.licenses.touch_license(
        op.company_id,
        uuid.UUID(op.plan.args["license_id"]),
        datetime.fromisoformat(op.plan.args["updated_at"]),
    )


async def return_addons(
    command: ChangeAddons, uow: ProvisioningUnitOfWork, pool: PoolGateway
) -> list[uuid.UUID]:
    held = await get_license(uow, command.company_id, command.license_id)
    units = rules.addons_to_remove(held, command.addon_types)
    await pool.return_units(peer_request_id(command.key, "return"), command.company_id, units)
    return units


async def remove_addons(command: ChangeAddons, returned: list[uuid.UUID], tx: Tx) -> AddonsRemoved:
    now = await tx.clock.now()
    await tx.licenses.delete_addons(command.company_id, returned)
    await tx.licenses.touch_license(command.company_id, command.license_id, now)
    return AddonsRemoved(await license_of(tx, command.company_id, command.license_id), returned)


# --- unassigning and reassigning: the pool first -----------------------------------------


async def return_license_units(
    command: LicenseCommand, uow: ProvisioningUnitOfWork, pool: PoolGateway
) -> list[uuid.UUID]:
    """The base unit and its add-ons go back to the pool."""
    held = await get_license(uow, command.company_id, command.license_id)
    units = rules.units_of_license(held)
    await pool.return_units(peer_request_id(command.key, "return"), command.company_id, units)
    return units


async def unassign_license(
    command: LicenseCommand, returned: list[uuid.UUID], tx: Tx
) -> list[uuid.UUID]:
    await tx.licenses.delete_license(command.company_id, command.license_id)
    return returned


async def _moves(tx: Tx, command: ReassignLicense) -> bool:
    held = await license_of(tx, command.company_id, command.license_id)
    user = await user_of(tx, command.company_id, command.user_id)
    has_type = held.user_id != user.user_id and await tx.licenses.user_has_type(
        user.company_id, user.user_id, held.license_type
    )
    return rules.moves(held, user, has_type)


async def reassign_in_pool(
    command: ReassignLicense, uow: ProvisioningUnitOfWork, pool: PoolGateway
) -> None:
    """The license keeps its unit, add-ons, extension and number; its user changes, in
    the pool first (the unit's assignee)."""
    async with uow.reading() as tx:
        moving = await _moves(tx, command)
    if moving:
        await pool.reassign_units(
            peer_request_id(command.key, "reassign"),
            command.company_id,
            [(command.license_id, AssigneeKind.USER, str(command.user_id))],
        )


async def reassign_license(command: ReassignLicense, _: None, tx: Tx) -> License:
    if await _moves(tx, command):
        now = await tx.clock.now()
        await tx.licenses.reassign(command.company_id, command.license_id, command.user_id, now)
    return await license_of(tx, command.company_id, command.license_id)


# --- extensions and numbers: one local transaction ---------------------------------------


async def set_extension(command: SetExtension, tx: Tx) -> License:
    held = await license_of(tx, command.company_id, command.license_id)
    rules.extension_target(held)
    if command.ext_key is not None:
        holder = await tx.licenses.ext_key_holder(command.company_id, command.ext_key)
        if holder not in (None, command.license_id):
            raise errors.ext_key_taken(command.ext_key)
    if command.number is not None:
        holder = await tx.licenses.number_holder(command.company_id, number_key(command.number))
        if holder not in (None, command.license_id):
            raise errors.number_taken(command.number)
    now = await tx.clock.now()
    await tx.licenses.set_extension(
        command.company_id, command.license_id, command.ext_key, command.number, now
    )
    return await license_of(tx, command.company_id, command.license_id)


# --- termination: the pool decides -------------------------------------------------------


async def terminate_in_pool(
    command: LicenseCommand, uow: ProvisioningUnitOfWork, pool: PoolGateway
) -> Subscription:
    """A base license or add-on that is not in use becomes TERMINATED in the pool."""
    subscription_id = command.license_id
    async with uow.reading() as tx:
        held = await tx.licenses.get_license(command.company_id, subscription_id)
        base = await tx.licenses.addon_base(command.company_id, subscription_id)
    refusal = rules.termination_refusal(subscription_id, held, base)
    if refusal is not None:
        raise refusal
    unit = await pool.get_unit(command.company_id, subscription_id)
    rules.terminable(unit)
    try:
        units = await pool.terminate_units(
            peer_request_id(command.key, "terminate"), command.company_id, [subscription_id]
        )
    except FailedPrecondition as error:
        if error.reason == Reason.UNIT_IN_USE.name:
            raise errors.in_use(subscription_id, error.message) from None
        raise
    gone = next((u for u in units if u.unit_id == subscription_id), unit)
    return Subscription(gone.unit_id, gone.license_type, gone.office_id, gone.state)


async def terminated(command: LicenseCommand, subscription: Subscription, tx: Tx) -> Subscription:
    """Nothing is kept here of a terminated unit; the transaction records the answer."""
    return subscription


UNDO: dict[str, LocalUndo] = {
    OperationKind.ASSIGN_LICENSE: undo_assign_license,
    OperationKind.ADD_ADDONS: undo_add_addons,
}

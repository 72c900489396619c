"""Users: created with a user license (a pool operation), listed, changed to another
user license (a pool operation), deleted (their units go back to the pool first)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from libs.common.errors import required
from libs.common.idempotency import IdempotencyKey
from services.provisioning.adapters.pool import PoolGateway
from services.provisioning.domain import errors, rules
from services.provisioning.domain.model import User
from services.provisioning.domain.peers import AssigneeKind, PoolUnit
from services.provisioning.domain.pool_operation import (
    Answered,
    OperationKind,
    Plan,
    PoolOperation,
    Reservation,
    derived_request_id,
)
from services.provisioning.unit_of_work import ProvisioningUnitOfWork, Tx
from services.provisioning.use_cases.operations import LocalUndo, PoolOperations

_USER_NAMESPACE = uuid.UUID("5d4f0b0e-7a53-4c4e-9d7e-2f3d4a8c1b60")


def peer_request_id(key: IdempotencyKey, step: str) -> str:
    """The pool request_id of one step of our request: same request, same payload, same
    id (so the pool replays it); another payload, another id."""
    return derived_request_id(key.company_id, key.request_id, key.fingerprint, step)


@dataclass(frozen=True, slots=True)
class CreateUser:
    key: IdempotencyKey
    company_id: uuid.UUID
    office_id: uuid.UUID
    display_name: str
    email: str | None
    license_type: str
    purchase_if_needed: bool


@dataclass(frozen=True, slots=True)
class ListUsers:
    company_id: uuid.UUID
    office_id: uuid.UUID | None
    query: str | None
    after: tuple[datetime, uuid.UUID] | None
    limit: int


@dataclass(frozen=True, slots=True)
class DeleteUser:
    key: IdempotencyKey
    company_id: uuid.UUID
    user_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ChangeUserLicense:
    key: IdempotencyKey
    company_id: uuid.UUID
    user_id: uuid.UUID
    license_type: str


class LicenseSource(enum.StrEnum):
    """Where a new user's license came from."""

    OWN_SPARE = "OWN_SPARE"
    OWN_RETURN_IN_GRACE = "OWN_RETURN_IN_GRACE"
    POOL = "POOL"
    PURCHASED = "PURCHASED"  # bought through billing for this request


@dataclass(frozen=True, slots=True)
class UserCreated:
    user: User
    source: LicenseSource | None  # None: the pool did not say


@dataclass(frozen=True, slots=True)
class LicenseChanged:
    user: User
    returned_unit_id: uuid.UUID | None  # None: the user had the type already


async def user_of(tx: Tx, company_id: uuid.UUID, user_id: uuid.UUID) -> User:
    return required(await tx.users.get_user(company_id, user_id), errors.user_not_found, user_id)


async def get_user(uow: ProvisioningUnitOfWork, company_id: uuid.UUID, user_id: uuid.UUID) -> User:
    async with uow.reading() as tx:
        return await user_of(tx, company_id, user_id)


async def list_users(uow: ProvisioningUnitOfWork, query: ListUsers) -> list[User]:
    async with uow.stale_reading() as tx:
        return await tx.users.list_users(
            query.company_id, query.office_id, query.query, query.after, query.limit
        )


# --- creating: a pool operation ----------------------------------------------------------


async def create_user(
    command: CreateUser, uow: ProvisioningUnitOfWork, operations: PoolOperations
) -> bytes:
    """A user license is held, the user written, the hold committed (the response as
    stored: a retry answers the same user)."""
    user_id = uuid.uuid5(_USER_NAMESPACE, peer_request_id(command.key, "user"))  # every retry

    async def prepare() -> Plan:
        if command.email:
            async with uow.reading() as tx:
                if await tx.users.email_holder(command.company_id, command.email) is not None:
                    raise errors.email_taken(command.email)
        return Plan(
            OperationKind.CREATE_USER,
            command.office_id,
            (
                Reservation(
                    command.license_type,
                    ((AssigneeKind.USER, str(user_id)),),
                    command.purchase_if_needed,
                ),
            ),
            args={"user_id": str(user_id)},
        )

    async def write(tx: Tx, now: datetime, op: PoolOperation) -> UserCreated:
        (unit_id,) = op.units(0)
        user = User(
            user_id,
            command.company_id,
            command.office_id,
            command.display_name,
            command.email,
            command.license_type,
            unit_id,
            now,
            now,
        )
        await tx.users.insert_user(user)
        return UserCreated(user, _source(op))

    return await operations.run(command.key, prepare, write)


def _source(op: PoolOperation) -> LicenseSource | None:
    if op.round == 1:  # the first Reserve found none: billing bought it
        return LicenseSource.PURCHASED
    sources = op.holds[0].sources
    return LicenseSource(sources[0]) if sources else None


async def undo_create_user(tx: Tx, now: datetime, op: PoolOperation) -> None:
    await tx.users.delete_user(op.company_id, uuid.UUID(op.plan.args["user_id"]))


# --- changing the user license: a pool operation -------------------------------------------


async def change_user_license(
    command: ChangeUserLicense, uow: ProvisioningUnitOfWork, operations: PoolOperations
) -> bytes:
    """A unit of the new type first (nothing changes if there is none), then the old
    unit goes back to the pool."""

    async def prepare() -> Plan | Answered:
        user = await get_user(uow, command.company_id, command.user_id)
        if user.license_type == command.license_type:
            return Answered(OperationKind.CHANGE_USER_LICENSE, LicenseChanged(user, None))
        return Plan(
            OperationKind.CHANGE_USER_LICENSE,
            user.office_id,
            (Reservation(command.license_type, ((AssigneeKind.USER, str(command.user_id)),)),),
            returns=(user.license_unit_id,),
            args={
                "user_id": str(command.user_id),
                "license_type": user.license_type,
                "updated_at": user.updated_at.isoformat(),
            },
        )

    async def write(tx: Tx, now: datetime, op: PoolOperation) -> LicenseChanged:
        (old,) = op.plan.returns
        (unit_id,) = op.units(0)
        changed = await tx.users.change_user_license(
            command.company_id, command.user_id, old, command.license_type, unit_id, now
        )
        if changed is None:
            raise errors.user_changed()
        return LicenseChanged(changed, old)

    return await operations.run(command.key, prepare, write)


async def undo_change_user_license(tx: Tx, now: datetime, op: PoolOperation) -> None:
    """The user is as it was: its license (the unit was not given back yet), and when it
    last changed."""
    (old,) = op.plan.returns
    (unit_id,) = op.units(0)
    await tx.users.change_user_license(
        op.company_id,
        uuid.UUID(op.plan.args["user_id"]),
        unit_id,
        op.plan.args["license_type"],
        old,
        datetime.fromisoformat(op.plan.args["updated_at"]),
    )


# --- deleting: the pool first, then one local transaction --------------------------------


async def return_user_units(
    command: DeleteUser, uow: ProvisioningUnitOfWork, pool: PoolGateway
) -> list[PoolUnit]:
    """The user license, base licenses and add-ons go back to the pool (the units as the
    pool has them now: POOLED with when others may claim them, or SPARE)."""
    async with uow.reading() as tx:
        user = await user_of(tx, command.company_id, command.user_id)
        licenses = await tx.licenses.licenses_of_user(command.company_id, command.user_id)
    units = rules.units_of_user(user, licenses)
    return await pool.return_units(
        peer_request_id(command.key, "return"), command.company_id, units
    )


async def delete_user(command: DeleteUser, returned: list[PoolUnit], tx: Tx) -> list[PoolUnit]:
    """The user and its licenses are gone here (their units are back in the pool)."""
    await tx.users.delete_user(command.company_id, command.user_id)
    return returned


UNDO: dict[str, LocalUndo] = {
    OperationKind.CREATE_USER: undo_create_user,
    OperationKind.CHANGE_USER_LICENSE: undo_change_user_license,
}

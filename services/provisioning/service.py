"""Provisioning use cases: users, base licenses, add-ons, extensions, search, terminate.

Licenses are pool units. Use cases that take units (creating a user, assigning a license,
adding add-ons, changing a user's license) are pool operations (`pool_operations.py`): a
durable record first, then Reserve, the local write, Commit; they either complete or leave
the pool exactly as it was, and a crash at any step is finished or undone by the
recovery. The others are "pool call(s), then one local transaction". Idempotency spans
both services: the pool calls carry request_ids derived deterministically from ours (and
the payload's fingerprint), so a retry after a crash replays them in the pool instead of
repeating them; the local transaction then claims our request_id and stores the response
(`run_once`). No database lock is held across a network call.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

import asyncpg

from libs.common.clock import Clock
from libs.common.errors import Aborted, FailedPrecondition
from libs.common.idempotency import IdempotencyKey, IdempotencyStore, Once, run_once
from libs.common.license_catalog import license_type
from libs.common.reasons import Reason
from services.provisioning.adapters.billing import BillingGateway
from services.provisioning.adapters.pool import PoolGateway
from services.provisioning.domain import catalog, errors, pool_operation
from services.provisioning.domain.extensions import number_key
from services.provisioning.domain.model import License, Subscription, User
from services.provisioning.domain.peers import AssigneeKind
from services.provisioning.domain.pool_operation import Plan, PoolOperation, Reservation
from services.provisioning.pool_operations import PoolOperations, StepObserver
from services.provisioning.repository import ProvisioningRepository

SCHEMA = "provisioning"
R = TypeVar("R")
_USER_NAMESPACE = uuid.UUID("5d4f0b0e-7a53-4c4e-9d7e-2f3d4a8c1b60")


def _license_changed() -> Aborted:
    return Aborted("CONCURRENT_CHANGE", "the license changed meanwhile; retry")


def derived_request_id(key: IdempotencyKey, step: str) -> str:
    """The pool request_id of one step of our request: same request, same payload, same
    id (so the pool replays it); another payload, another id."""
    return pool_operation.derived_request_id(key.company_id, key.request_id, key.fingerprint, step)


# Pool operations, by kind (the name of their local undo).
CREATE_USER = "create_user"
CHANGE_USER_LICENSE = "change_user_license"
ASSIGN_LICENSE = "assign_license"
ADD_ADDONS = "add_addons"


class ProvisioningService:
    def __init__(
        self,
        db: asyncpg.Pool,
        pool: PoolGateway,
        billing: BillingGateway,
        clock: Clock,
        lease_seconds: float = 60.0,
        after_step: StepObserver | None = None,
    ) -> None:
        self._db = db
        self._pool = pool
        self._clock = clock
        self._repo = ProvisioningRepository()
        self._idempotency = IdempotencyStore(SCHEMA)
        self.operations = PoolOperations(
            db,
            pool,
            billing,
            clock,
            {
                CREATE_USER: self._undo_create_user,
                CHANGE_USER_LICENSE: self._undo_change_user_license,
                ASSIGN_LICENSE: self._undo_assign_license,
                ADD_ADDONS: self._undo_add_addons,
            },
            lease_seconds,
            after_step,
        )

    # --- the shape of every mutation ------------------------------------------------------

    async def _replayed(self, key: IdempotencyKey) -> bytes | None:
        """The stored response of an already completed request, if any."""
        async with self._db.acquire() as conn:
            return await self._repo.stored_response(conn, key)

    async def _locally(
        self, once: Once[R], effect: Callable[[asyncpg.Connection, datetime], Awaitable[R]]
    ) -> bytes:
        """The local transaction of a mutation: claims the request_id, runs the effect,
        stores the response."""
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.now(conn, self._clock.sql_now())
            return await run_once(conn, self._idempotency, once, lambda: effect(conn, now))

    # --- users ----------------------------------------------------------------------------

    async def create_user(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        display_name: str,
        email: str | None,
        code: str,
        purchase_if_needed: bool,
        once: Once[User],
    ) -> bytes:
        user_id = uuid.uuid5(
            _USER_NAMESPACE, derived_request_id(once.key, "user")
        )  # the same on every retry

        async def prepare() -> Plan:
            if email:
                async with self._db.acquire() as conn:
                    if await self._repo.email_holder(conn, company_id, email) is not None:
                        raise errors.email_taken(email)
            return Plan(
                CREATE_USER,
                office_id,
                (Reservation(code, ((AssigneeKind.USER, str(user_id)),), purchase_if_needed),),
                args={"user_id": str(user_id)},
            )

        async def write(conn: asyncpg.Connection, now: datetime, op: PoolOperation) -> User:
            (unit_id,) = op.units(0)
            user = User(
                user_id, company_id, office_id, display_name, email, code, unit_id, now, now
            )
            try:
                await self._repo.insert_user(conn, user)
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name == "users_email":
                    raise errors.email_taken(email or "") from None
                raise
            return user

        return await self.operations.run(once, prepare, write)

    async def _undo_create_user(
        self, conn: asyncpg.Connection, now: datetime, op: PoolOperation
    ) -> None:
        await self._repo.delete_user(conn, op.company_id, uuid.UUID(op.plan.args["user_id"]))

    async def get_user(self, company_id: uuid.UUID, user_id: uuid.UUID) -> User:
        async with self._db.acquire() as conn:
            user = await self._repo.get_user(conn, company_id, user_id)
        if user is None:
            raise errors.user_not_found(user_id)
        return user

    async def list_users(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        query: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[User]:
        async with self._db.acquire() as conn:
            return await self._repo.list_users(conn, company_id, office_id, query, after, limit)

    async def delete_user(
        self, company_id: uuid.UUID, user_id: uuid.UUID, once: Once[list[uuid.UUID]]
    ) -> bytes:
        """The user license, base licenses and add-ons go back to the pool (SPEC §7)."""
        if (stored := await self._replayed(once.key)) is not None:
            return stored
        user = await self.get_user(company_id, user_id)
        async with self._db.acquire() as conn:
            licenses = await self._repo.licenses_of_user(conn, company_id, user_id)
        units = [user.license_unit_id]
        for held in licenses:
            units += [a.addon_id for a in held.addons] + [held.license_id]
        await self._pool.return_units(derived_request_id(once.key, "return"), company_id, units)

        async def effect(conn: asyncpg.Connection, now: datetime) -> list[uuid.UUID]:
            await self._repo.delete_user(conn, company_id, user_id)
            return units

        return await self._locally(once, effect)

    async def change_user_license(
        self,
        company_id: uuid.UUID,
        user_id: uuid.UUID,
        code: str,
        once: Once[tuple[User, uuid.UUID | None]],
    ) -> bytes:
        """A unit of the new type first (nothing changes if there is none), then the old
        unit goes back to the pool."""

        async def prepare() -> Plan | bytes:
            user = await self.get_user(company_id, user_id)
            if user.license_type == code:
                return once.encode((user, None))
            return Plan(
                CHANGE_USER_LICENSE,
                user.office_id,
                (Reservation(code, ((AssigneeKind.USER, str(user_id)),)),),
                returns=(user.license_unit_id,),
                args={
                    "user_id": str(user_id),
                    "license_type": user.license_type,
                    "updated_at": user.updated_at.isoformat(),
                },
            )

        async def write(
            conn: asyncpg.Connection, now: datetime, op: PoolOperation
        ) -> tuple[User, uuid.UUID | None]:
            (old,) = op.plan.returns
            (unit_id,) = op.units(0)
            changed = await self._repo.change_user_license(
                conn, company_id, user_id, old, code, unit_id, now
            )
            if changed is None:
                raise Aborted("CONCURRENT_CHANGE", "the user changed meanwhile; retry")
            return changed, old

        return await self.operations.run(once, prepare, write)

    async def _undo_change_user_license(
        self, conn: asyncpg.Connection, now: datetime, op: PoolOperation
    ) -> None:
        """The user is as it was: its license (the unit was not given back yet), and
        when it last changed."""
        (old,) = op.plan.returns
        (unit_id,) = op.units(0)
        await self._repo.change_user_license(
            conn,
            op.company_id,
            uuid.UUID(op.plan.args["user_id"]),
            unit_id,
            op.plan.args["license_type"],
            old,
            datetime.fromisoformat(op.plan.args["updated_at"]),
        )

    # --- base licenses --------------------------------------------------------------------

    async def get_license(self, company_id: uuid.UUID, license_id: uuid.UUID) -> License:
        async with self._db.acquire() as conn:
            found = await self._repo.get_license(conn, company_id, license_id)
        if found is None:
            raise errors.license_not_found(license_id)
        return found

    async def assign_license(
        self, company_id: uuid.UUID, user_id: uuid.UUID, code: str, once: Once[License]
    ) -> bytes:
        async def prepare() -> Plan:
            user = await self.get_user(company_id, user_id)
            async with self._db.acquire() as conn:
                if await self._repo.user_has_type(conn, user_id, code):
                    raise errors.already_has_license(user_id, code)
            return Plan(
                ASSIGN_LICENSE,
                user.office_id,
                (Reservation(code, ((AssigneeKind.USER, str(user_id)),)),),
            )

        async def write(conn: asyncpg.Connection, now: datetime, op: PoolOperation) -> License:
            (unit_id,) = op.units(0)
            held = License(
                unit_id, company_id, op.plan.office_id, code, user_id, None, None, (), now, now
            )
            try:
                await self._repo.insert_license(conn, held)
            except asyncpg.UniqueViolationError:
                raise errors.already_has_license(user_id, code) from None
            except asyncpg.ForeignKeyViolationError:
                raise errors.user_not_found(user_id) from None
            found = await self._repo.get_license(conn, company_id, unit_id)
            assert found is not None
            return found

        return await self.operations.run(once, prepare, write)

    async def _undo_assign_license(
        self, conn: asyncpg.Connection, now: datetime, op: PoolOperation
    ) -> None:
        (unit_id,) = op.units(0)
        await self._repo.delete_license(conn, op.company_id, unit_id)

    async def unassign_license(
        self, company_id: uuid.UUID, license_id: uuid.UUID, once: Once[list[uuid.UUID]]
    ) -> bytes:
        """The base unit and its add-ons go back to the pool (SPEC §7)."""
        if (stored := await self._replayed(once.key)) is not None:
            return stored
        held = await self.get_license(company_id, license_id)
        units = [a.addon_id for a in held.addons] + [held.license_id]
        await self._pool.return_units(derived_request_id(once.key, "return"), company_id, units)

        async def effect(conn: asyncpg.Connection, now: datetime) -> list[uuid.UUID]:
            await self._repo.delete_license(conn, company_id, license_id)
            return units

        return await self._locally(once, effect)

    async def reassign_license(
        self, company_id: uuid.UUID, license_id: uuid.UUID, user_id: uuid.UUID, once: Once[License]
    ) -> bytes:
        """The license keeps its unit, add-ons, extension and number; its user changes,
        here and in the pool (the unit's assignee)."""
        if (stored := await self._replayed(once.key)) is not None:
            return stored

        async def checked(conn: asyncpg.Connection) -> License:
            held = await self._repo.get_license(conn, company_id, license_id)
            if held is None:
                raise errors.license_not_found(license_id)
            user = await self._repo.get_user(conn, company_id, user_id)
            if user is None:
                raise errors.user_not_found(user_id)
            if held.user_id != user_id:
                if user.office_id != held.office_id:
                    raise errors.other_office(user_id, held.office_id)
                if await self._repo.user_has_type(conn, user_id, held.license_type):
                    raise errors.already_has_license(user_id, held.license_type)
            return held

        async with self._db.acquire() as conn:
            held = await checked(conn)
        if held.user_id != user_id:
            await self._pool.reassign_units(
                derived_request_id(once.key, "reassign"),
                company_id,
                [(held.license_id, AssigneeKind.USER, str(user_id))],
            )

        async def effect(conn: asyncpg.Connection, now: datetime) -> License:
            if (await checked(conn)).user_id != user_id:
                await self._repo.reassign(conn, company_id, license_id, user_id, now)
            found = await self._repo.get_license(conn, company_id, license_id)
            assert found is not None
            return found

        return await self._locally(once, effect)

    async def search_licenses(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        code: str | None,
        user_id: uuid.UUID | None,
        ext_prefix: str | None,
        number: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[License]:
        if (ext_prefix or number) and code is None:
            code = catalog.PHONE_SYSTEM  # extensions and numbers exist on Phone System only
        async with self._db.acquire() as conn:
            return await self._repo.search_licenses(
                conn,
                company_id,
                office_id,
                code,
                user_id,
                ext_prefix,
                number_key(number) if number else None,
                after,
                limit,
            )

    # --- add-ons --------------------------------------------------------------------------

    async def add_addons(
        self,
        company_id: uuid.UUID,
        license_id: uuid.UUID,
        codes: Sequence[str],
        once: Once[License],
    ) -> bytes:
        """All or nothing: every add-on type is held first; only if all can be held are
        they assigned to the base license, otherwise the holds are released (units back
        exactly as they were) and NO_LICENSE_AVAILABLE names the missing type."""

        async def prepare() -> Plan:
            held = await self.get_license(company_id, license_id)
            for code in codes:
                if held.addon(code) is not None:
                    raise errors.addon_present(code)
            base = ((AssigneeKind.BASE_LICENSE, str(license_id)),)
            return Plan(
                ADD_ADDONS,
                held.office_id,
                tuple(Reservation(code, base) for code in codes),
                args={"license_id": str(license_id), "updated_at": held.updated_at.isoformat()},
            )

        async def write(conn: asyncpg.Connection, now: datetime, op: PoolOperation) -> License:
            addons = [
                (op.units(index)[0], license_id, reservation.license_type)
                for index, reservation in enumerate(op.plan.reservations)
            ]
            try:
                await self._repo.insert_addons(conn, company_id, addons, now)
            except (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError):
                raise _license_changed() from None
            await self._repo.touch_license(conn, company_id, license_id, now)
            found = await self._repo.get_license(conn, company_id, license_id)
            if found is None:
                raise _license_changed()
            return found

        return await self.operations.run(once, prepare, write)

    async def _undo_add_addons(
        self, conn: asyncpg.Connection, now: datetime, op: PoolOperation
    ) -> None:
        """The license is as it was: without the add-ons, and when it last changed."""
        units = [op.units(index)[0] for index in range(len(op.plan.reservations))]
        await self._repo.delete_addons(conn, op.company_id, units)
        await self._repo.touch_license(
            conn,
            op.company_id,
            uuid.UUID(op.plan.args["license_id"]),
            datetime.fromisoformat(op.plan.args["updated_at"]),
        )

    async def remove_addons(
        self,
        company_id: uuid.UUID,
        license_id: uuid.UUID,
        codes: Sequence[str],
        once: Once[tuple[License, list[uuid.UUID]]],
    ) -> bytes:
        if (stored := await self._replayed(once.key)) is not None:
            return stored
        held = await self.get_license(company_id, license_id)
        units = []
        for code in codes:
            addon = held.addon(code)
            if addon is None:
                raise errors.addon_absent(code)
            units.append(addon.addon_id)
        await self._pool.return_units(derived_request_id(once.key, "return"), company_id, units)

        async def effect(
            conn: asyncpg.Connection, now: datetime
        ) -> tuple[License, list[uuid.UUID]]:
            await self._repo.delete_addons(conn, company_id, units)
            await self._repo.touch_license(conn, company_id, license_id, now)
            found = await self._repo.get_license(conn, company_id, license_id)
            assert found is not None
            return found, units

        return await self._locally(once, effect)

    # --- extensions and numbers ----------------------------------------------------------

    async def set_extension(
        self,
        company_id: uuid.UUID,
        license_id: uuid.UUID,
        ext_key: str | None,
        number: str | None,
        once: Once[License],
    ) -> bytes:
        async def effect(conn: asyncpg.Connection, now: datetime) -> License:
            held = await self._repo.get_license(conn, company_id, license_id)
            if held is None:
                raise errors.license_not_found(license_id)
            if held.license_type != catalog.PHONE_SYSTEM:
                raise errors.not_phone_system(license_id, held.license_type)
            if ext_key is not None:
                holder = await self._repo.ext_key_holder(conn, company_id, ext_key)
                if holder not in (None, license_id):
                    raise errors.ext_key_taken(ext_key)
            if number is not None:
                holder = await self._repo.number_holder(conn, company_id, number_key(number))
                if holder not in (None, license_id):
                    raise errors.number_taken(number)
            await self._repo.set_extension(conn, company_id, license_id, ext_key, number, now)
            found = await self._repo.get_license(conn, company_id, license_id)
            assert found is not None
            return found

        try:
            return await self._locally(once, effect)
        except asyncpg.UniqueViolationError as error:  # a concurrent writer won
            if "number" in (error.constraint_name or ""):
                raise errors.number_taken(number or "") from None
            raise errors.ext_key_taken(ext_key or "") from None

    # --- termination ----------------------------------------------------------------------

    async def terminate(
        self, company_id: uuid.UUID, subscription_id: uuid.UUID, once: Once[Subscription]
    ) -> bytes:
        """A base license or add-on that is not in use becomes TERMINATED in the pool."""
        if (stored := await self._replayed(once.key)) is not None:
            return stored
        async with self._db.acquire() as conn:
            held = await self._repo.get_license(conn, company_id, subscription_id)
            base = await self._repo.addon_base(conn, company_id, subscription_id)
        if held is not None:
            raise errors.in_use(subscription_id, f"assigned to user {held.user_id}")
        if base is not None:
            raise errors.in_use(subscription_id, f"an add-on of license {base}")
        unit = await self._pool.get_unit(company_id, subscription_id)
        found = license_type(unit.license_type)
        if found is None or found.category not in (catalog.BASE, catalog.BASE_ADDON):
            raise errors.not_terminable(subscription_id, unit.license_type)
        if unit.in_use:
            raise errors.in_use(subscription_id, unit.state.lower())
        try:
            units = await self._pool.terminate_units(
                derived_request_id(once.key, "terminate"), company_id, [subscription_id]
            )
        except FailedPrecondition as error:
            if error.reason == Reason.UNIT_IN_USE.name:
                raise errors.in_use(subscription_id, error.message) from None
            raise
        gone = next((u for u in units if u.unit_id == subscription_id), unit)

        async def effect(conn: asyncpg.Connection, now: datetime) -> Subscription:
            return Subscription(gone.unit_id, gone.license_type, gone.office_id, gone.state)

        return await self._locally(once, effect)

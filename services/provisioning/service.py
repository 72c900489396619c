"""Provisioning use cases: users, base licenses, add-ons, extensions, search, terminate.

Licenses are pool units, so most use cases are "pool call(s), then one local
transaction". Idempotency spans both services: the pool calls carry request_ids derived
deterministically from ours (and the payload's fingerprint), so a retry after a crash
replays them in the pool instead of repeating them; the local transaction then claims
our request_id and stores the response (`run_once`). No database lock is held across a
network call.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

import asyncpg

from libs.common.clock import Clock
from libs.common.errors import Aborted, DomainError, FailedPrecondition
from libs.common.idempotency import IdempotencyKey, IdempotencyStore, Once, reused, run_once
from libs.common.license_catalog import license_type
from services.provisioning.billing import BillingGateway
from services.provisioning.domain import catalog, errors
from services.provisioning.domain.extensions import number_key
from services.provisioning.domain.model import License, Subscription, User
from services.provisioning.pool_client import (
    BASE_LICENSE,
    USER,
    AssigneeKind,
    PoolClient,
    PoolUnit,
)
from services.provisioning.repository import ProvisioningRepository

log = logging.getLogger(__name__)

SCHEMA = "provisioning"
R = TypeVar("R")
X = TypeVar("X")
_USER_NAMESPACE = uuid.UUID("5d4f0b0e-7a53-4c4e-9d7e-2f3d4a8c1b60")
_HOLD_SECONDS = 300
_GENERATIONS = 5


def derived_request_id(key: IdempotencyKey, step: str) -> str:
    """The pool request_id of one step of our request: same request, same payload, same
    id (so the pool replays it); another payload, another id."""
    digest = hashlib.sha256(
        f"{key.company_id}/{key.request_id}/".encode() + key.fingerprint
    ).hexdigest()[:40]
    return f"prov-{digest}-{step}"


def is_no_license(error: DomainError) -> bool:
    return error.reason == "NO_LICENSE_AVAILABLE"


class ProvisioningService:
    def __init__(
        self, db: asyncpg.Pool, pool: PoolClient, billing: BillingGateway, clock: Clock
    ) -> None:
        self._db = db
        self._pool = pool
        self._billing = billing
        self._clock = clock
        self._repo = ProvisioningRepository()
        self._idempotency = IdempotencyStore(SCHEMA)

    # --- the shape of every mutation ------------------------------------------------------

    async def _replayed(self, key: IdempotencyKey) -> bytes | None:
        """The stored response of an already completed request, if any."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT fingerprint, response FROM {SCHEMA}.idempotency_keys"
                " WHERE company_id = $1 AND request_id = $2",
                key.company_id,
                key.request_id,
            )
        if row is None or row["response"] is None:
            return None
        if bytes(row["fingerprint"]) != key.fingerprint:
            raise reused(key)
        return bytes(row["response"])

    async def _locally(
        self, once: Once[R], effect: Callable[[asyncpg.Connection, datetime], Awaitable[R]]
    ) -> bytes:
        """The local transaction of a mutation: claims the request_id, runs the effect,
        stores the response."""
        async with self._db.acquire() as conn, conn.transaction():
            now = await self._repo.now(conn, self._clock.sql_now())
            return await run_once(conn, self._idempotency, once, lambda: effect(conn, now))

    async def _undo(
        self, key: IdempotencyKey, company_id: uuid.UUID, units: Sequence[uuid.UUID]
    ) -> None:
        """Gives back units a failed request took (best effort; logged when it fails)."""
        try:
            await self._pool.return_units(derived_request_id(key, "undo"), company_id, units)
        except DomainError:
            log.exception("could not give back units %s", [str(u) for u in units])

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
        if (stored := await self._replayed(once.key)) is not None:
            return stored
        if email:
            async with self._db.acquire() as conn:
                if await self._repo.email_holder(conn, company_id, email) is not None:
                    raise errors.email_taken(email)
        user_id = uuid.uuid5(
            _USER_NAMESPACE, derived_request_id(once.key, "user")
        )  # the same on every retry
        units = await self._acquire(
            once.key, company_id, office_id, code, [(USER, str(user_id))], purchase_if_needed
        )
        unit_id = units[0].unit_id

        async def effect(conn: asyncpg.Connection, now: datetime) -> User:
            user = User(
                user_id, company_id, office_id, display_name, email, code, unit_id, now, now
            )
            await self._repo.insert_user(conn, user)
            return user

        try:
            return await self._locally(once, effect)
        except asyncpg.UniqueViolationError:
            await self._undo(once.key, company_id, [unit_id])
            raise errors.email_taken(email or "") from None

    async def _acquire(
        self,
        key: IdempotencyKey,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        code: str,
        assignees: Sequence[tuple[AssigneeKind, str]],
        purchase_if_needed: bool = False,
    ) -> list[PoolUnit]:
        """Units for the office (own spare, own returns in grace, pool); a shortfall is
        bought through billing when asked for and billing is there, otherwise it fails
        with NO_LICENSE_AVAILABLE carrying the shortfall."""
        try:
            return await self._pool.acquire(
                derived_request_id(key, f"acquire-{code}"),
                company_id,
                office_id,
                code,
                assignees,
            )
        except FailedPrecondition as error:
            if not (is_no_license(error) and purchase_if_needed and self._billing.configured):
                raise
            shortfall = int(error.metadata.get("shortfall", len(assignees)))
        # The quantity is part of the id: a retry that finds another shortfall is another
        # purchase, not a reuse of this one's id.
        await self._billing.purchase(
            company_id,
            office_id,
            code,
            shortfall,
            derived_request_id(key, f"purchase-{code}-{shortfall}"),
        )
        return await self._pool.acquire(
            derived_request_id(key, f"acquire-after-purchase-{code}"),
            company_id,
            office_id,
            code,
            assignees,
        )

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
        if (stored := await self._replayed(once.key)) is not None:
            return stored
        user = await self.get_user(company_id, user_id)
        if user.license_type == code:
            return once.encode((user, None))
        units = await self._acquire(
            once.key, company_id, user.office_id, code, [(USER, str(user_id))]
        )
        old = user.license_unit_id
        await self._pool.return_units(derived_request_id(once.key, "return"), company_id, [old])

        async def effect(conn: asyncpg.Connection, now: datetime) -> tuple[User, uuid.UUID | None]:
            changed = await self._repo.change_user_license(
                conn, company_id, user_id, old, code, units[0].unit_id, now
            )
            if changed is None:
                raise Aborted("CONCURRENT_CHANGE", "the user changed meanwhile; retry")
            return changed, old

        return await self._locally(once, effect)

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
        if (stored := await self._replayed(once.key)) is not None:
            return stored
        user = await self.get_user(company_id, user_id)
        async with self._db.acquire() as conn:
            if await self._repo.user_has_type(conn, user_id, code):
                raise errors.already_has_license(user_id, code)
        units = await self._acquire(
            once.key, company_id, user.office_id, code, [(USER, str(user_id))]
        )
        unit_id = units[0].unit_id

        async def effect(conn: asyncpg.Connection, now: datetime) -> License:
            await self._repo.insert_license(
                conn,
                License(
                    unit_id, company_id, user.office_id, code, user_id, None, None, (), now, now
                ),
            )
            found = await self._repo.get_license(conn, company_id, unit_id)
            assert found is not None
            return found

        try:
            return await self._locally(once, effect)
        except asyncpg.UniqueViolationError:
            await self._undo(once.key, company_id, [unit_id])
            raise errors.already_has_license(user_id, code) from None

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
                [(held.license_id, USER, str(user_id))],
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
        if (stored := await self._replayed(once.key)) is not None:
            return stored
        held = await self.get_license(company_id, license_id)
        for code in codes:
            if held.addon(code) is not None:
                raise errors.addon_present(code)
        holds: list[tuple[str, uuid.UUID, str]] = []  # code, hold, its request id
        try:
            for code in codes:
                holds.append(await self._reserve_one(once.key, company_id, held.office_id, code))
        except DomainError:
            for _, hold_id, rid in holds:
                await self._pool.release(rid + "-release", company_id, hold_id)
            raise
        addons: list[tuple[uuid.UUID, uuid.UUID, str]] = []
        for code, hold_id, rid in holds:
            units = await self._pool.commit(
                rid + "-commit", company_id, hold_id, [(BASE_LICENSE, str(license_id))]
            )
            addons.append((units[0].unit_id, license_id, code))

        async def effect(conn: asyncpg.Connection, now: datetime) -> License:
            await self._repo.insert_addons(conn, company_id, addons, now)
            await self._repo.touch_license(conn, company_id, license_id, now)
            found = await self._repo.get_license(conn, company_id, license_id)
            if found is None:
                raise Aborted("CONCURRENT_CHANGE", "the license changed meanwhile; retry")
            return found

        try:
            return await self._locally(once, effect)
        except (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError, Aborted):
            await self._undo(once.key, company_id, [a for a, _, _ in addons])
            raise Aborted("CONCURRENT_CHANGE", "the license changed meanwhile; retry") from None

    async def _reserve_one(
        self, key: IdempotencyKey, company_id: uuid.UUID, office_id: uuid.UUID, code: str
    ) -> tuple[str, uuid.UUID, str]:
        """A pending hold of one unit. A retry of a request whose holds were released
        (or expired) finds them replayed by the pool and moves to the next generation."""
        for generation in range(_GENERATIONS):
            rid = derived_request_id(key, f"reserve-{code}-{generation}")
            reserved = await self._pool.reserve(
                rid, company_id, office_id, code, 1, _HOLD_SECONDS, allow_partial=False
            )
            assert reserved.hold_id is not None
            if await self._pool.hold_pending(company_id, reserved.hold_id):
                return code, reserved.hold_id, rid
        raise Aborted("TOO_MANY_RETRIES", "this request_id was retried too often; use a new one")

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
        if unit.state in ("ASSIGNED", "HELD"):
            raise errors.in_use(subscription_id, unit.state.lower())
        try:
            units = await self._pool.terminate_units(
                derived_request_id(once.key, "terminate"), company_id, [subscription_id]
            )
        except FailedPrecondition as error:
            if error.reason in ("UNIT_IN_USE", "UNIT_NOT_TERMINABLE"):
                raise errors.in_use(subscription_id, error.message) from None
            raise
        gone = next((u for u in units if u.unit_id == subscription_id), unit)

        async def effect(conn: asyncpg.Connection, now: datetime) -> Subscription:
            return Subscription(gone.unit_id, gone.license_type, gone.office_id, gone.state)

        return await self._locally(once, effect)

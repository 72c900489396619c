"""Provisioning in memory: its `Tx` (the same class the service uses) over repositories
kept in dictionaries, a unit of work with the same all-or-nothing transactions, and
in-memory peers (a pool that holds, commits, releases and returns units with the pool's
answers; a billing that buys units into it).

The database's guarantees the use cases rely on are kept too: one e-mail per company
(`users_email`), one license of a type per user, extensions and numbers unique per
company, add-ons removed with their license, one pool operation per request_id, leases
on the database's clock (`ProvisioningState.db_now`, moved by hand).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from libs.common.clock import FakeClock
from libs.common.errors import DomainError
from libs.common.reasons import Reason
from services.provisioning.domain import errors
from services.provisioning.domain.catalog import PHONE_SYSTEM
from services.provisioning.domain.csv_import import Account, AccountUser, ExistingLicense
from services.provisioning.domain.csv_import import PlannedRow as ImportRow
from services.provisioning.domain.extensions import number_key
from services.provisioning.domain.model import (
    Addon,
    Failure,
    ImportJob,
    ImportStage,
    ImportState,
    License,
    StoredImport,
    StoredStep,
    User,
)
from services.provisioning.domain.peers import (
    AssigneeKind,
    Availability,
    HoldState,
    PoolUnit,
    Reserved,
)
from services.provisioning.domain.pool_operation import Held, Plan, PoolOperation, Step
from services.provisioning.unit_of_work import Tx
from tests.fakes.unit_of_work import InMemoryRequestLog, InMemoryUnitOfWork, RequestTable


@dataclass
class StoredLicense:
    license: License  # without its add-ons (they are rows of their own)
    number_key: str | None


@dataclass
class StoredAddon:
    company_id: uuid.UUID
    license_id: uuid.UUID
    addon: Addon


@dataclass
class StoredOperation:
    operation: PoolOperation
    lease_until: float
    updated_at: float


@dataclass
class ProvisioningState:
    """The tables of the provisioning schema."""

    requests: RequestTable = field(default_factory=RequestTable)
    users: dict[uuid.UUID, User] = field(default_factory=dict)
    licenses: dict[uuid.UUID, StoredLicense] = field(default_factory=dict)
    addons: dict[uuid.UUID, StoredAddon] = field(default_factory=dict)
    operations: dict[tuple[uuid.UUID, str], StoredOperation] = field(default_factory=dict)
    imports: dict[tuple[uuid.UUID, str], StoredImport] = field(default_factory=dict)
    import_rows: dict[tuple[uuid.UUID, str], list[ImportRow]] = field(default_factory=dict)
    import_steps: dict[tuple[uuid.UUID, str, int], dict[int, StoredStep]] = field(
        default_factory=dict
    )
    db_now: float = 0.0  # the database's own clock (seconds), for leases

    def license(self, license_id: uuid.UUID) -> License | None:
        stored = self.licenses.get(license_id)
        if stored is None:
            return None
        addons = sorted(
            (a.addon for a in self.addons.values() if a.license_id == license_id),
            key=lambda a: a.license_type,
        )
        return replace(stored.license, addons=tuple(addons))


class FakeTxClock:
    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    async def now(self) -> datetime:
        return self._clock.now()


class FakeUsers:
    def __init__(self, state: ProvisioningState) -> None:
        self._s = state

    async def insert_user(self, user: User) -> None:
        if user.email and await self.email_holder(user.company_id, user.email) is not None:
            raise errors.email_taken(user.email)
        assert user.user_id not in self._s.users, "primary key"
        self._s.users[user.user_id] = user

    async def get_user(self, company_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
        user = self._s.users.get(user_id)
        return user if user is not None and user.company_id == company_id else None

    async def email_holder(self, company_id: uuid.UUID, email: str) -> uuid.UUID | None:
        return next(
            (
                u.user_id
                for u in self._s.users.values()
                if u.company_id == company_id and (u.email or "").lower() == email.lower()
            ),
            None,
        )

    async def list_users(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        query: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[User]:
        def matches(u: User) -> bool:
            if query is None:
                return True
            q = query.lower()
            return q in u.display_name.lower() or q in (u.email or "").lower()

        found = sorted(
            (
                u
                for u in self._s.users.values()
                if u.company_id == company_id
                and (office_id is None or u.office_id == office_id)
                and matches(u)
                and (after is None or (u.created_at, u.user_id) > after)
            ),
            key=lambda u: (u.created_at, u.user_id),
        )
        return found[:limit]

    async def change_user_license(
        self,
        company_id: uuid.UUID,
        user_id: uuid.UUID,
        old_unit_id: uuid.UUID,
        license_type: str,
        unit_id: uuid.UUID,
        now: datetime,
    ) -> User | None:
        user = await self.get_user(company_id, user_id)
        if user is None or user.license_unit_id != old_unit_id:
            return None
        changed = replace(user, license_type=license_type, license_unit_id=unit_id, updated_at=now)
        self._s.users[user_id] = changed
        return changed

    async def delete_user(self, company_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        for stored in list(self._s.licenses.values()):
            held = stored.license
            if held.company_id == company_id and held.user_id == user_id:
                _drop_license(self._s, held.license_id)
        user = await self.get_user(company_id, user_id)
        if user is None:
            return False
        del self._s.users[user_id]
        return True


def _drop_license(state: ProvisioningState, license_id: uuid.UUID) -> None:
    state.licenses.pop(license_id, None)
    for addon_id, addon in list(state.addons.items()):
        if addon.license_id == license_id:  # ON DELETE CASCADE
            del state.addons[addon_id]


class FakeLicenses:
    def __init__(self, state: ProvisioningState) -> None:
        self._s = state

    async def get_license(self, company_id: uuid.UUID, license_id: uuid.UUID) -> License | None:
        found = self._s.license(license_id)
        return found if found is not None and found.company_id == company_id else None

    def _mine(self, company_id: uuid.UUID) -> list[License]:
        found = [self._s.license(i) for i in self._s.licenses]
        return sorted(
            (h for h in found if h is not None and h.company_id == company_id),
            key=lambda h: (h.created_at, h.license_id),
        )

    async def licenses_of_user(self, company_id: uuid.UUID, user_id: uuid.UUID) -> list[License]:
        return [h for h in self._mine(company_id) if h.user_id == user_id]

    async def user_has_type(
        self, company_id: uuid.UUID, user_id: uuid.UUID, license_type: str
    ) -> bool:
        return any(
            s.license.company_id == company_id
            and s.license.user_id == user_id
            and s.license.license_type == license_type
            for s in self._s.licenses.values()
        )

    async def search_licenses(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        license_type: str | None,
        user_id: uuid.UUID | None,
        ext_prefix: str | None,
        number_key: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[License]:
        found = [
            h
            for h in self._mine(company_id)
            if (office_id is None or h.office_id == office_id)
            and (license_type is None or h.license_type == license_type)
            and (user_id is None or h.user_id == user_id)
            and (ext_prefix is None or (h.ext_key or "").startswith(ext_prefix))
            and (number_key is None or self._s.licenses[h.license_id].number_key == number_key)
            and (after is None or (h.created_at, h.license_id) > after)
        ]
        return found[:limit]

    async def insert_license(self, license: License) -> None:
        if license.user_id not in self._s.users:
            raise errors.user_not_found(license.user_id)
        if await self.user_has_type(license.company_id, license.user_id, license.license_type):
            raise errors.already_has_license(license.user_id, license.license_type)
        key = number_key(license.number) if license.number else None
        self._s.licenses[license.license_id] = StoredLicense(replace(license, addons=()), key)

    async def delete_license(self, company_id: uuid.UUID, license_id: uuid.UUID) -> None:
        if await self.get_license(company_id, license_id) is not None:
            _drop_license(self._s, license_id)

    async def reassign(
        self, company_id: uuid.UUID, license_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> None:
        stored = self._s.licenses[license_id]
        stored.license = replace(stored.license, user_id=user_id, updated_at=now)

    async def ext_key_holder(self, company_id: uuid.UUID, ext_key: str) -> uuid.UUID | None:
        return next((h.license_id for h in self._mine(company_id) if h.ext_key == ext_key), None)

    async def number_holder(self, company_id: uuid.UUID, number_key: str) -> uuid.UUID | None:
        return next(
            (
                h.license_id
                for h in self._mine(company_id)
                if self._s.licenses[h.license_id].number_key == number_key
            ),
            None,
        )

    async def set_extension(
        self,
        company_id: uuid.UUID,
        license_id: uuid.UUID,
        ext_key: str | None,
        number: str | None,
        now: datetime,
    ) -> None:
        stored = self._s.licenses[license_id]
        stored.license = replace(stored.license, ext_key=ext_key, number=number, updated_at=now)
        stored.number_key = number_key(number) if number else None

    async def insert_addons(
        self,
        company_id: uuid.UUID,
        addons: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
        now: datetime,
    ) -> None:
        for addon_id, license_id, code in addons:
            held = self._s.license(license_id)
            if held is None or held.addon(code) is not None:
                raise errors.license_changed()
            self._s.addons[addon_id] = StoredAddon(
                company_id, license_id, Addon(addon_id, code, now)
            )

    async def delete_addons(self, company_id: uuid.UUID, addon_ids: Sequence[uuid.UUID]) -> None:
        for addon_id in addon_ids:
            self._s.addons.pop(addon_id, None)

    async def touch_license(
        self, company_id: uuid.UUID, license_id: uuid.UUID, now: datetime
    ) -> None:
        stored = self._s.licenses.get(license_id)
        if stored is not None:
            stored.license = replace(stored.license, updated_at=now)

    async def addon_base(self, company_id: uuid.UUID, addon_id: uuid.UUID) -> uuid.UUID | None:
        found = self._s.addons.get(addon_id)
        return found.license_id if found is not None and found.company_id == company_id else None


class FakeOperations:
    def __init__(self, state: ProvisioningState) -> None:
        self._s = state

    def _lease(self, seconds: float) -> float:
        return self._s.db_now + seconds

    async def start_operation(
        self,
        company_id: uuid.UUID,
        request_id: str,
        fingerprint: bytes,
        plan: Plan,
        attempt: uuid.UUID,
        owner: uuid.UUID,
        lease_seconds: float,
    ) -> PoolOperation | None:
        if (company_id, request_id) in self._s.operations:
            return None
        operation = PoolOperation(
            company_id, request_id, fingerprint, attempt, Step.RESERVING, plan, 0, (), None, owner
        )
        self._s.operations[(company_id, request_id)] = StoredOperation(
            operation, self._lease(lease_seconds), self._s.db_now
        )
        return operation

    async def get_operation(
        self, company_id: uuid.UUID, request_id: str, for_update: bool = False
    ) -> PoolOperation | None:
        found = self._s.operations.get((company_id, request_id))
        return found.operation if found is not None else None

    async def lease_operation(
        self, company_id: uuid.UUID, request_id: str, owner: uuid.UUID, lease_seconds: float
    ) -> PoolOperation | None:
        found = self._s.operations.get((company_id, request_id))
        if found is None or found.operation.step is Step.DONE:
            return None
        if found.lease_until > self._s.db_now:
            return None
        found.operation = replace(found.operation, lease_owner=owner)
        found.lease_until = self._lease(lease_seconds)
        return found.operation

    async def drop_lease(self, operation: PoolOperation) -> None:
        found = self._s.operations.get((operation.company_id, operation.request_id))
        if (
            found is not None
            and found.operation.lease_owner == operation.lease_owner
            and found.operation.step is not Step.DONE
        ):
            found.lease_until = self._s.db_now

    async def set_round(self, operation: PoolOperation, round_: int) -> bool:
        found = self._s.operations.get((operation.company_id, operation.request_id))
        if (
            found is None
            or found.operation.attempt != operation.attempt
            or found.operation.step is not Step.RESERVING
        ):
            return False
        found.operation = replace(found.operation, round=round_)
        return True

    async def mark_written(
        self,
        operation: PoolOperation,
        holds: Sequence[Held],
        response: bytes,
        lease_seconds: float,
    ) -> PoolOperation:
        found = self._s.operations[(operation.company_id, operation.request_id)]
        found.operation = replace(
            found.operation, step=Step.WRITTEN, holds=tuple(holds), response=response
        )
        found.lease_until = self._lease(lease_seconds)
        return found.operation

    async def complete_operation(self, operation: PoolOperation) -> None:
        found = self._s.operations[(operation.company_id, operation.request_id)]
        if found.operation.attempt == operation.attempt:
            found.operation = replace(found.operation, step=Step.DONE)

    async def delete_operation(self, operation: PoolOperation) -> None:
        key = (operation.company_id, operation.request_id)
        found = self._s.operations.get(key)
        if found is not None and found.operation.attempt == operation.attempt:
            del self._s.operations[key]

    async def interrupted_operations(self, limit: int) -> list[tuple[uuid.UUID, str]]:
        due = sorted(
            (
                (s.lease_until, key)
                for key, s in self._s.operations.items()
                if s.operation.step is not Step.DONE and s.lease_until <= self._s.db_now
            ),
            key=lambda pair: pair[0],
        )
        return [key for _, key in due[:limit]]


class FakeImports:
    def __init__(self, state: ProvisioningState, clock: FakeClock) -> None:
        self._s = state
        self._clock = clock

    async def account(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Account:
        users = [u for u in self._s.users.values() if u.company_id == company_id]
        mine = [self._s.license(i) for i in self._s.licenses]
        held = [h for h in mine if h is not None and h.company_id == company_id]
        return Account(
            users=[
                AccountUser(u.user_id, u.display_name, u.email)
                for u in users
                if u.office_id == office_id
            ],
            phone_systems={
                h.user_id: ExistingLicense(
                    h.license_id,
                    h.user_id,
                    h.ext_key,
                    h.number,
                    frozenset(a.license_type for a in h.addons),
                )
                for h in held
                if h.office_id == office_id and h.license_type == PHONE_SYSTEM
            },
            ext_keys={h.ext_key: h.license_id for h in held if h.ext_key is not None},
            numbers={
                key: h.license_id
                for h in held
                if (key := self._s.licenses[h.license_id].number_key)
            },
        )

    async def insert_import(
        self, job: ImportJob, fingerprint: bytes, chunk_size: int, rows: Sequence[ImportRow]
    ) -> bool:
        key = (job.company_id, job.import_id)
        if key in self._s.imports:
            return False
        self._s.imports[key] = StoredImport(job, fingerprint, 0, chunk_size)
        self._s.import_rows[key] = list(rows)
        return True

    async def restart_failed_import(
        self,
        job: ImportJob,
        fingerprint: bytes,
        chunk_size: int,
        rows: Sequence[ImportRow],
        attempt: int,
    ) -> bool:
        key = (job.company_id, job.import_id)
        if self._s.imports[key].job.state is not ImportState.FAILED:
            return False
        self._s.imports[key] = StoredImport(job, fingerprint, attempt, chunk_size)
        self._s.import_rows[key] = list(rows)
        return True

    async def get_import(self, company_id: uuid.UUID, import_id: str) -> StoredImport | None:
        return self._s.imports.get((company_id, import_id))

    async def running_imports(self) -> list[tuple[uuid.UUID, str]]:
        return [k for k, s in self._s.imports.items() if s.job.state is ImportState.RUNNING]

    async def import_rows(self, company_id: uuid.UUID, import_id: str) -> list[ImportRow]:
        return sorted(self._s.import_rows.get((company_id, import_id), []), key=lambda r: r.row)

    async def update_import(self, company_id: uuid.UUID, import_id: str, **fields: Any) -> None:
        stored = self._s.imports[(company_id, import_id)]
        job, attempt = stored.job, stored.attempt
        progress = job.progress
        changes: dict[str, Any] = {"updated_at": self._clock.now()}
        for name, value in fields.items():
            if name == "state":
                changes["state"] = ImportState(value)
            elif name == "stage":
                changes["stage"] = ImportStage(value)
            elif name == "failure":
                changes["failure"] = value if isinstance(value, Failure) or value is None else None
            elif name == "attempt":
                attempt = value
            elif name in ("units_reserved", "units_committed", "rows_applied"):
                progress = replace(progress, **{name: value})
            else:
                raise AssertionError(f"update_import of {name}")
        job = replace(job, progress=progress, **changes)
        self._s.imports[(company_id, import_id)] = replace(stored, job=job, attempt=attempt)

    async def steps(
        self, company_id: uuid.UUID, import_id: str, attempt: int
    ) -> dict[int, StoredStep]:
        return dict(self._s.import_steps.get((company_id, import_id, attempt), {}))

    async def save_step(
        self, company_id: uuid.UUID, import_id: str, attempt: int, step: StoredStep
    ) -> None:
        steps = self._s.import_steps.setdefault((company_id, import_id, attempt), {})
        found = steps.get(step.step)
        steps[step.step] = step if found is None else replace(found, committed=step.committed)

    async def finalize_import(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        rows: Sequence[ImportRow],
        new_bases: dict[int, uuid.UUID],
        addons: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
        now: datetime,
    ) -> None:
        licenses = FakeLicenses(self._s)
        for row in rows:
            if row.license_id is None:
                held = License(
                    new_bases[row.row],
                    company_id,
                    office_id,
                    PHONE_SYSTEM,
                    row.user_id,
                    row.ext_key,
                    row.number,
                    (),
                    now,
                    now,
                )
                try:
                    await licenses.insert_license(held)
                except DomainError:
                    raise errors.ImportConflict("licenses_one_per_user_and_type") from None
            else:
                stored = self._s.licenses[row.license_id]
                number = row.number if row.number is not None else stored.license.number
                await licenses.set_extension(company_id, row.license_id, row.ext_key, number, now)
        for addon_id, license_id, code in addons:
            self._s.addons[addon_id] = StoredAddon(
                company_id, license_id, Addon(addon_id, code, now)
            )

    async def licenses_exist(self, company_id: uuid.UUID, license_ids: Sequence[uuid.UUID]) -> int:
        return sum(
            1
            for i in license_ids
            if i in self._s.licenses and self._s.licenses[i].license.company_id == company_id
        )

    async def users_exist(
        self, company_id: uuid.UUID, office_id: uuid.UUID, user_ids: Sequence[uuid.UUID]
    ) -> int:
        return sum(
            1
            for i in user_ids
            if i in self._s.users
            and self._s.users[i].company_id == company_id
            and self._s.users[i].office_id == office_id
        )

    async def add_progress(
        self, company_id: uuid.UUID, import_id: str, reserved: int = 0, committed: int = 0
    ) -> None:
        stored = self._s.imports[(company_id, import_id)]
        progress = stored.job.progress
        progress = replace(
            progress,
            units_reserved=progress.units_reserved + reserved,
            units_committed=progress.units_committed + committed,
        )
        self._s.imports[(company_id, import_id)] = replace(
            stored, job=replace(stored.job, progress=progress)
        )


class InMemoryProvisioningUnitOfWork(InMemoryUnitOfWork[ProvisioningState, Tx]):
    """`ProvisioningUnitOfWork` in memory; `clock` gives every transaction its instant."""

    def __init__(self, clock: FakeClock, state: ProvisioningState | None = None) -> None:
        self.clock = clock
        self.locks: set[str] = set()

        def bind(s: ProvisioningState) -> Tx:
            return Tx(
                clock=FakeTxClock(clock),  # type: ignore[arg-type]
                users=FakeUsers(s),  # type: ignore[arg-type]
                licenses=FakeLicenses(s),  # type: ignore[arg-type]
                operations=FakeOperations(s),  # type: ignore[arg-type]
                imports=FakeImports(s, clock),  # type: ignore[arg-type]
                requests=InMemoryRequestLog(s.requests),
            )

        super().__init__(state or ProvisioningState(), bind)

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        if name in self.locks:
            yield False
            return
        self.locks.add(name)
        try:
            yield True
        finally:
            self.locks.discard(name)

    def failure(self, error: Exception) -> Exception:
        return error

    def is_outage(self, error: BaseException) -> bool:
        return False


# --- peers --------------------------------------------------------------------------------


@dataclass
class FakeUnit:
    unit_id: uuid.UUID
    company_id: uuid.UUID
    office_id: uuid.UUID
    license_type: str
    state: str = "SPARE"  # SPARE, HELD, ASSIGNED, TERMINATED
    assignee: tuple[AssigneeKind, str] | None = None

    def seen(self) -> PoolUnit:
        return PoolUnit(
            self.unit_id,
            self.license_type,
            self.office_id,
            self.state,
            self.assignee[1] if self.assignee else "",
        )


@dataclass
class FakeHold:
    hold_id: uuid.UUID
    company_id: uuid.UUID
    unit_ids: tuple[uuid.UUID, ...]
    state: HoldState = HoldState.PENDING


class InMemoryPool:
    """`PoolGateway` in memory: spare units of offices, holds, and the pool's answers
    (a request_id replays its first answer; a refusal is remembered as nothing).

    `refuse` makes the next call of a method fail with the given error (as the pool or
    the network would); `calls` lists the methods called, in order."""

    def __init__(self) -> None:
        self.units: dict[uuid.UUID, FakeUnit] = {}
        self.holds: dict[uuid.UUID, FakeHold] = {}
        self.offices: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self.replies: dict[str, Any] = {}
        self.refusals: dict[str, list[DomainError]] = {}
        self.calls: list[str] = []

    # --- test set-up and inspection ----------------------------------------------------

    def office(self, company_id: uuid.UUID, office_id: uuid.UUID) -> None:
        self.offices.add((company_id, office_id))

    def add_spare(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_type: str, quantity: int = 1
    ) -> list[uuid.UUID]:
        self.office(company_id, office_id)
        ids = [uuid.uuid4() for _ in range(quantity)]
        for unit_id in ids:
            self.units[unit_id] = FakeUnit(unit_id, company_id, office_id, license_type)
        return ids

    def refuse(self, method: str, error: DomainError) -> None:
        self.refusals.setdefault(method, []).append(error)

    def expire(self, hold_id: uuid.UUID) -> None:
        """The hold's lifetime ran out: its units are back where they were."""
        hold = self.holds[hold_id]
        if hold.state is HoldState.PENDING:
            hold.state = HoldState.EXPIRED
            for unit_id in hold.unit_ids:
                self.units[unit_id].state = "SPARE"

    def in_state(self, state: str, license_type: str | None = None) -> list[FakeUnit]:
        return [
            u
            for u in self.units.values()
            if u.state == state and (license_type is None or u.license_type == license_type)
        ]

    def pending_holds(self) -> list[FakeHold]:
        return [h for h in self.holds.values() if h.state is HoldState.PENDING]

    # --- the gateway --------------------------------------------------------------------

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        waiting = self.refusals.get(method)
        if waiting:
            raise waiting.pop(0)

    def _unit(self, company_id: uuid.UUID, unit_id: uuid.UUID) -> FakeUnit:
        unit = self.units.get(unit_id)
        if unit is None or unit.company_id != company_id:
            raise Reason.UNIT_NOT_FOUND.error(f"unit {unit_id} not found")
        return unit

    def _hold(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> FakeHold:
        hold = self.holds.get(hold_id)
        if hold is None or hold.company_id != company_id:
            raise Reason.HOLD_NOT_FOUND.error(f"hold {hold_id} not found")
        return hold

    async def reserve(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        ttl_seconds: int,
        allow_partial: bool = True,
    ) -> Reserved:
        self._enter("reserve")
        if request_id in self.replies:
            replied: Reserved = self.replies[request_id]
            return replied
        spare = sorted(
            (
                u
                for u in self.units.values()
                if u.office_id == office_id
                and u.license_type == license_type
                and u.state == "SPARE"
            ),
            key=lambda u: u.unit_id,
        )
        shortfall = max(0, quantity - len(spare))
        if shortfall and not allow_partial:
            raise Reason.NO_LICENSE_AVAILABLE.error(
                f"{shortfall} {license_type} missing", {"shortfall": str(shortfall)}
            )
        taken = spare[:quantity]
        hold_id = uuid.uuid4() if taken else None
        for unit in taken:
            unit.state = "HELD"
        ids = tuple(sorted(u.unit_id for u in taken))
        if hold_id is not None:
            self.holds[hold_id] = FakeHold(hold_id, company_id, ids)
        reserved = Reserved(hold_id, ids, shortfall, ("OWN_SPARE",) * len(ids))
        self.replies[request_id] = reserved
        return reserved

    async def commit(
        self,
        request_id: str,
        company_id: uuid.UUID,
        hold_id: uuid.UUID,
        assignees: Sequence[tuple[AssigneeKind, str]],
    ) -> list[PoolUnit]:
        self._enter("commit")
        if request_id in self.replies:
            replied: list[PoolUnit] = self.replies[request_id]
            return replied
        hold = self._hold(company_id, hold_id)
        if hold.state is HoldState.EXPIRED:
            raise Reason.HOLD_EXPIRED.error(f"hold {hold_id} expired")
        if hold.state is not HoldState.PENDING:
            raise Reason.HOLD_NOT_PENDING.error(f"hold {hold_id} is {hold.state}")
        hold.state = HoldState.COMMITTED
        for unit_id, assignee in zip(hold.unit_ids, assignees, strict=True):
            unit = self.units[unit_id]
            unit.state, unit.assignee = "ASSIGNED", assignee
        units = [self.units[u].seen() for u in hold.unit_ids]
        self.replies[request_id] = units
        return units

    async def release(self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID) -> None:
        self._enter("release")
        if request_id in self.replies:
            return
        hold = self._hold(company_id, hold_id)
        if hold.state is HoldState.COMMITTED:
            raise Reason.HOLD_NOT_PENDING.error(f"hold {hold_id} is committed")
        if hold.state is HoldState.PENDING:
            hold.state = HoldState.RELEASED
            for unit_id in hold.unit_ids:
                self.units[unit_id].state = "SPARE"
        self.replies[request_id] = None

    async def return_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[PoolUnit]:
        self._enter("return_units")
        if request_id in self.replies:
            replied: list[PoolUnit] = self.replies[request_id]
            return replied
        units = [self._unit(company_id, u) for u in unit_ids]
        for unit in units:
            unit.state, unit.assignee = "SPARE", None
        seen = [u.seen() for u in units]
        self.replies[request_id] = seen
        return seen

    async def reassign_units(
        self,
        request_id: str,
        company_id: uuid.UUID,
        reassignments: Sequence[tuple[uuid.UUID, AssigneeKind, str]],
    ) -> list[PoolUnit]:
        self._enter("reassign_units")
        units = []
        for unit_id, kind, ident in reassignments:
            unit = self._unit(company_id, unit_id)
            unit.assignee = (kind, ident)
            units.append(unit.seen())
        return units

    async def terminate_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[PoolUnit]:
        self._enter("terminate_units")
        units = [self._unit(company_id, u) for u in unit_ids]
        for unit in units:
            if unit.state in ("ASSIGNED", "HELD"):
                raise Reason.UNIT_IN_USE.error(f"unit {unit.unit_id} is in use")
        for unit in units:
            unit.state = "TERMINATED"
        return [u.seen() for u in units]

    async def get_unit(self, company_id: uuid.UUID, unit_id: uuid.UUID) -> PoolUnit:
        self._enter("get_unit")
        return self._unit(company_id, unit_id).seen()

    async def hold_state(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> HoldState:
        self._enter("hold_state")
        return self._hold(company_id, hold_id).state

    async def check_office(self, company_id: uuid.UUID, office_id: uuid.UUID) -> None:
        self._enter("check_office")
        if (company_id, office_id) not in self.offices:
            raise Reason.OFFICE_NOT_FOUND.error(f"office {office_id} not found")

    async def availability(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_types: Sequence[str]
    ) -> Availability:
        self._enter("availability")
        spare = {
            code: sum(
                1
                for u in self.units.values()
                if u.office_id == office_id and u.license_type == code and u.state == "SPARE"
            )
            for code in license_types
        }
        return Availability(spare, dict.fromkeys(license_types, 0), dict.fromkeys(license_types, 0))

    async def close(self) -> None:
        pass


class InMemoryBilling:
    """`BillingGateway` that buys into an `InMemoryPool`: new spare units of the office
    (a request_id buys once)."""

    def __init__(self, pool: InMemoryPool) -> None:
        self._pool = pool
        self.purchases: dict[str, int] = {}

    @property
    def configured(self) -> bool:
        return True

    async def purchase(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        request_id: str,
    ) -> None:
        if request_id in self.purchases:
            return
        self.purchases[request_id] = quantity
        self._pool.add_spare(company_id, office_id, license_type, quantity)

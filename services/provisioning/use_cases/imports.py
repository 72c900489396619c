"""Mass configuration: dry run, apply, progress (docs/product.md, "Mass configuration").

Applying is all-or-nothing across two services, idempotent by import id, and safe
against crashes:

1. The import and its planned rows are stored first (one transaction). The same id
   with the same file returns that import; another file fails IMPORT_ID_REUSED.
2. RESERVING: one pool hold per license type and chunk of rows (new Phone System
   licenses, then each add-on type). Each hold is recorded as it is made.
3. COMMITTING: every hold is committed to its assignees (users for the Phone System
   units, the base license for add-ons), in batches of thousands of units per call.
4. FINALIZING: one local transaction writes every license, extension, number and
   add-on, and marks the import SUCCEEDED.

Every pool call carries a request_id derived from (company, import id, attempt, step),
a pure function of what was stored in step 1, so a re-run after a crash replays what
the pool already did instead of doing it again. If anything fails (a shortfall, the
account changed meanwhile), the import rolls back: pending holds are released (units
back exactly as they were), committed units are returned, and the import is FAILED
with the reason. One runner per import at a time (a PostgreSQL advisory lock), and a
restarted service resumes the imports that were running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from libs.common import metrics
from libs.common.errors import DomainError, FailedPrecondition
from libs.common.reasons import Reason
from services.provisioning.adapters.pool import PoolGateway
from services.provisioning.config import ProvisioningSettings
from services.provisioning.domain import catalog, csv_import, errors, import_steps
from services.provisioning.domain.csv_import import PlannedRow
from services.provisioning.domain.import_steps import Step, request_id
from services.provisioning.domain.model import (
    Failure,
    ImportJob,
    ImportStage,
    ImportState,
    Progress,
    QuoteLine,
    RowIssue,
    StoredImport,
    StoredStep,
)
from services.provisioning.domain.peers import AssigneeKind
from services.provisioning.unit_of_work import ProvisioningUnitOfWork

log = logging.getLogger(__name__)

MAX_LISTED_ERRORS = 1000
_EXPIRED = (Reason.HOLD_EXPIRED.name, Reason.HOLD_NOT_PENDING.name)


@dataclass(frozen=True, slots=True)
class _Checked:
    """A file as checked: its planned rows, errors, warnings, data rows, and its quote."""

    planned: Sequence[PlannedRow]
    problems: Sequence[RowIssue]
    warnings: Sequence[RowIssue]
    rows: int
    quote: tuple[QuoteLine, ...]

    def job(
        self, file: ImportFile, state: ImportState, stage: ImportStage, at: datetime | None
    ) -> ImportJob:
        """The file's import job in `state` (a dry run's is never stored: no time)."""
        return ImportJob(
            import_id=file.import_id,
            company_id=file.company_id,
            office_id=file.office_id,
            state=state,
            stage=stage,
            row_count=self.rows,
            errors=tuple(self.problems[:MAX_LISTED_ERRORS]),
            error_count=len(self.problems),
            warnings=tuple(self.warnings[:MAX_LISTED_ERRORS]),
            quote=self.quote,
            progress=Progress(units_total=sum(q.needed for q in self.quote)),
            failure=None,
            rows_reconfiguring=sum(1 for r in self.planned if r.license_id is not None),
            created_at=at,
            updated_at=at,
        )


class _Retry(Exception):
    """A hold expired before it was committed (a long pause): start a new attempt."""


class _Fail(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class ImportFile:
    """A file to check (a dry run: no import id needed) or to apply under an import id."""

    company_id: uuid.UUID
    office_id: uuid.UUID
    import_id: str
    content: bytes


def fingerprint(office_id: uuid.UUID, content: bytes) -> bytes:
    return hashlib.sha256(str(office_id).encode() + b"\n" + content).digest()


def shortfall_issues(quote: Sequence[QuoteLine]) -> list[RowIssue]:
    """The units a file needs and the office cannot get, as errors of no row."""
    return [
        RowIssue(
            0,
            "",
            Reason.NO_LICENSE_AVAILABLE.name,
            f"needs {line.shortfall} more {line.license_type}: the office has "
            f"{line.needed - line.shortfall} of the {line.needed} the file needs (own spare, "
            "own returns in grace, pool); purchase or free some",
        )
        for line in quote
        if line.shortfall
    ]


class ImportService:
    def __init__(
        self,
        uow: ProvisioningUnitOfWork,
        pool: PoolGateway,
        settings: ProvisioningSettings,
    ) -> None:
        self._uow = uow
        self._pool = pool
        self._settings = settings
        self._runners: dict[tuple[uuid.UUID, str], asyncio.Task[None]] = {}

    # --- validation and the dry run ---------------------------------------------------

    async def _check(
        self, company_id: uuid.UUID, office_id: uuid.UUID, content: bytes
    ) -> tuple[list[PlannedRow], list[RowIssue], list[RowIssue], int]:
        """Planned rows, errors, warnings and the number of data rows."""
        parsed = csv_import.parse(content, self._settings.import_max_rows)
        rows_seen = len(parsed.rows) + len({i.row for i in parsed.errors if i.row > 1})
        async with self._uow.reading() as tx:
            account = await tx.imports.account(company_id, office_id)
        planned, issues = csv_import.plan(parsed, account)
        problems = csv_import.sorted_issues([*parsed.errors, *issues])
        return planned, problems, parsed.warnings, rows_seen

    async def _quote(
        self, company_id: uuid.UUID, office_id: uuid.UUID, planned: Sequence[PlannedRow]
    ) -> tuple[QuoteLine, ...]:
        needs = csv_import.needs(planned)
        if not needs:
            return ()
        found = await self._pool.availability(company_id, office_id, list(needs))
        return tuple(
            QuoteLine(
                code,
                needed,
                found.own_spare.get(code, 0),
                found.own_returns_in_grace.get(code, 0),
                found.pool_claimable.get(code, 0),
            )
            for code, needed in needs.items()
        )

    async def dry_run(self, file: ImportFile) -> ImportJob:
        """The report and the allocation quote; nothing changes, nothing is stored."""
        company_id, office_id = file.company_id, file.office_id
        await self._pool.check_office(company_id, office_id)  # NOT_FOUND for no office
        planned, problems, warnings, rows = await self._check(company_id, office_id, file.content)
        quote = await self._quote(company_id, office_id, planned) if not problems else ()
        # What the apply would fail with, said now: the shortfall is an error of the file.
        problems = [*problems, *shortfall_issues(quote)]
        checked = _Checked(planned, problems, warnings, rows, quote)
        return checked.job(file, ImportState.VALIDATED, ImportStage.NONE, None)

    # --- applying ---------------------------------------------------------------------

    async def start(self, file: ImportFile) -> ImportJob:
        """Stores the import and starts applying it; an import already stored under the
        id is returned (and resumed if it was interrupted)."""
        company_id, office_id, import_id = file.company_id, file.office_id, file.import_id
        content = file.content
        print_ = fingerprint(office_id, content)
        existing = await self._stored(company_id, import_id)
        # A failed import had no effect and is not remembered: its id may be applied again.
        if existing is not None and existing.job.state is not ImportState.FAILED:
            return self._resume(existing, print_)
        await self._pool.check_office(company_id, office_id)
        planned, problems, warnings, rows = await self._check(company_id, office_id, content)
        if problems:
            raise errors.ImportRejected(tuple(problems[:MAX_LISTED_ERRORS]))
        quote = await self._quote(company_id, office_id, planned)
        async with self._uow.transaction() as tx:
            now = await tx.clock.now()
            checked = _Checked(planned, problems, warnings, rows, quote)
            job = checked.job(file, ImportState.RUNNING, ImportStage.RESERVING, now)
            chunk = self._settings.import_chunk_size
            if existing is None:
                inserted = await tx.imports.insert_import(job, print_, chunk, planned)
            else:  # a new attempt, so that no pool request id of the failed one is replayed
                inserted = await tx.imports.restart_failed_import(
                    job, print_, chunk, planned, existing.attempt + 1
                )
        if not inserted:  # a concurrent start with the same id won
            existing = await self._stored(company_id, import_id)
            assert existing is not None
            return self._resume(existing, print_)
        self._launch(company_id, import_id)
        return job

    def _resume(self, existing: StoredImport, print_: bytes) -> ImportJob:
        if existing.fingerprint != print_:
            raise errors.import_id_reused(existing.job.import_id)
        if not existing.job.ended:
            self._launch(existing.job.company_id, existing.job.import_id)
        return existing.job

    async def _stored(self, company_id: uuid.UUID, import_id: str) -> StoredImport | None:
        async with self._uow.reading() as tx:
            return await tx.imports.get_import(company_id, import_id)

    async def get(self, company_id: uuid.UUID, import_id: str) -> ImportJob:
        stored = await self._stored(company_id, import_id)
        if stored is None:
            raise errors.import_not_found(import_id)
        return stored.job

    async def watch(
        self, company_id: uuid.UUID, import_id: str, interval: float = 0.2
    ) -> AsyncIterator[ImportJob]:
        """The import now, then on every change, until it ended."""
        last = None
        while True:
            job = await self.get(company_id, import_id)
            if job != last:
                yield job
                last = job
            if job.ended:
                return
            await asyncio.sleep(interval)

    async def wait(self, company_id: uuid.UUID, import_id: str) -> ImportJob:
        """Waits for this process's runner of the import (tests, shutdown)."""
        task = self._runners.get((company_id, import_id))
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
        return await self.get(company_id, import_id)

    def _launch(self, company_id: uuid.UUID, import_id: str) -> None:
        key = (company_id, import_id)
        running = self._runners.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._run(company_id, import_id))
        self._runners[key] = task
        task.add_done_callback(lambda t: self._done(key, t))

    def _done(self, key: tuple[uuid.UUID, str], task: asyncio.Task[None]) -> None:
        if self._runners.get(key) is task:
            del self._runners[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("import %s stopped", key[1], exc_info=task.exception())

    async def resume_all(self) -> None:
        """Resumes the imports that were running when a service stopped."""
        try:
            async with self._uow.reading() as tx:
                running = await tx.imports.running_imports()
        except Exception as error:
            if not self._uow.is_outage(error):
                raise
            log.warning("could not look for interrupted imports", exc_info=True)
            return
        for company_id, import_id in running:
            self._launch(company_id, import_id)

    async def close(self) -> None:
        tasks = list(self._runners.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, company_id: uuid.UUID, import_id: str) -> None:
        lock = f"provisioning-import/{company_id}/{import_id}"
        while True:
            async with self._uow.exclusive(lock) as got:
                if not got:
                    return  # another runner (maybe another replica) has it
                await self._drive(company_id, import_id)
            # Applied again after it failed, while this runner was finishing: no other
            # runner was launched (this one still ran), so this one drives the new attempt.
            stored = await self._stored(company_id, import_id)
            if stored is None or stored.job.ended:
                return

    async def _update(self, company_id: uuid.UUID, import_id: str, **fields: object) -> None:
        async with self._uow.transaction() as tx:
            await tx.imports.update_import(company_id, import_id, **fields)

    async def _drive(self, company_id: uuid.UUID, import_id: str) -> None:
        stored = await self._stored(company_id, import_id)
        if stored is None or stored.job.ended:
            return
        async with self._uow.reading() as tx:
            rows = await tx.imports.import_rows(company_id, import_id)
        run = _Run(self, stored, rows)
        attempts = 1  # of this run: an import applied again after a failure starts afresh
        while True:
            job = run.stored.job
            if job.stage is ImportStage.ROLLING_BACK:
                await run.rollback()
                await self._update(
                    company_id, import_id, state="FAILED", stage=ImportStage.NONE.value
                )
                return
            try:
                await run.apply()
                return
            except _Retry:
                attempt = run.stored.attempt + 1
                attempts += 1
                await run.rollback()
                if attempts > self._settings.import_max_attempts:
                    await self._fail(
                        run,
                        Failure("IMPORT_INTERRUPTED", "holds kept expiring; start it again"),
                    )
                    return
                await self._update(
                    company_id,
                    import_id,
                    attempt=attempt,
                    stage=ImportStage.RESERVING.value,
                    units_reserved=0,
                    units_committed=0,
                )
                run.stored = replace(run.stored, attempt=attempt)
            except _Fail as failed:
                await self._fail(run, failed.failure)
                return

    async def _fail(self, run: _Run, failure: Failure) -> None:
        job = run.stored.job
        log.info("import %s failed: %s", job.import_id, failure.reason)
        await self._update(
            job.company_id,
            job.import_id,
            stage=ImportStage.ROLLING_BACK.value,
            failure=failure,
        )
        await run.rollback()
        await self._update(
            job.company_id, job.import_id, state="FAILED", stage=ImportStage.NONE.value
        )


class _Run:
    """One runner's pass over an import."""

    def __init__(
        self, service: ImportService, stored: StoredImport, rows: list[PlannedRow]
    ) -> None:
        self.service = service
        self.stored = stored
        self.rows = {r.row: r for r in rows}
        self.steps = import_steps.steps(rows, stored.chunk_size)
        self.pool = service._pool
        self.job = stored.job

    def _rid(self, kind: str, step: Step) -> str:
        return request_id(
            self.job.company_id, self.job.import_id, f"a{self.stored.attempt}", kind, step.index
        )

    async def _recorded(self) -> dict[int, StoredStep]:
        async with self.service._uow.reading() as tx:
            return await tx.imports.steps(
                self.job.company_id, self.job.import_id, self.stored.attempt
            )

    async def _save(self, step: StoredStep, reserved: int = 0, committed: int = 0) -> None:
        async with self.service._uow.transaction() as tx:
            await tx.imports.save_step(
                self.job.company_id, self.job.import_id, self.stored.attempt, step
            )
            await tx.imports.add_progress(
                self.job.company_id, self.job.import_id, reserved, committed
            )

    async def _parallel(self, calls: Sequence[Callable[[], Awaitable[None]]]) -> None:
        gate = asyncio.Semaphore(self.service._settings.import_parallel_calls)

        async def one(call: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                await call()

        results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def apply(self) -> None:
        company_id, import_id = self.job.company_id, self.job.import_id
        await self.service._update(company_id, import_id, stage=ImportStage.RESERVING.value)
        recorded = await self._recorded()

        def reserve(step: Step) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                reserved = await self.pool.reserve(
                    self._rid("reserve", step),
                    company_id,
                    self.job.office_id,
                    step.license_type,
                    len(step.rows),
                    self.service._settings.import_hold_seconds,
                )
                done = StoredStep(
                    step.index,
                    step.license_type,
                    reserved.hold_id,
                    reserved.unit_ids,
                    reserved.shortfall,
                    False,
                )
                recorded[step.index] = done
                await self._save(done, reserved=len(reserved.unit_ids))

            return call

        await self._parallel([reserve(s) for s in self.steps if s.index not in recorded])
        shortfall: dict[str, int] = {}
        for step in self.steps:
            if recorded[step.index].shortfall:
                code = step.license_type
                shortfall[code] = shortfall.get(code, 0) + recorded[step.index].shortfall
        if shortfall:
            total = sum(shortfall.values())
            listed = ", ".join(f"{n} {code}" for code, n in shortfall.items())
            raise _Fail(
                Failure(
                    Reason.NO_LICENSE_AVAILABLE.name,
                    f"{total} license(s) missing: {listed}; purchase them or free some",
                    {
                        "shortfall": str(total),
                        **{f"shortfall.{c}": str(n) for c, n in shortfall.items()},
                    },
                )
            )
        await self.service._update(company_id, import_id, stage=ImportStage.COMMITTING.value)
        new = import_steps.new_bases(
            [
                (s, recorded[s.index].unit_ids)
                for s in self.steps
                if s.license_type == catalog.PHONE_SYSTEM
            ]
        )
        expired = False

        def commit(step: Step) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                nonlocal expired
                held = recorded[step.index]
                assert held.hold_id is not None
                rows = [self.rows[n] for n in step.rows]
                if step.license_type == catalog.PHONE_SYSTEM:
                    assignees = [(AssigneeKind.USER, str(r.user_id)) for r in rows]
                else:
                    assignees = [
                        (AssigneeKind.BASE_LICENSE, str(import_steps.base_of(r, new))) for r in rows
                    ]
                try:
                    await self.pool.commit(
                        self._rid("commit", step),
                        company_id,
                        held.hold_id,
                        assignees,
                    )
                except FailedPrecondition as error:
                    if error.reason in _EXPIRED:
                        expired = True
                        return
                    raise
                done = replace(held, committed=True)
                recorded[step.index] = done
                await self._save(done, committed=len(held.unit_ids))

            return call

        await self._parallel([commit(s) for s in self.steps if not recorded[s.index].committed])
        if expired:
            raise _Retry()
        await self._finalize(recorded, new)

    async def _finalize(self, recorded: dict[int, StoredStep], new: dict[int, uuid.UUID]) -> None:
        company_id, import_id = self.job.company_id, self.job.import_id
        await self.service._update(company_id, import_id, stage=ImportStage.FINALIZING.value)
        addons: list[tuple[uuid.UUID, uuid.UUID, str]] = []
        for step in self.steps:
            if step.license_type == catalog.PHONE_SYSTEM:
                continue
            units = sorted(recorded[step.index].unit_ids)
            for row_number, unit_id in zip(step.rows, units, strict=True):
                base = import_steps.base_of(self.rows[row_number], new)
                addons.append((unit_id, base, step.license_type))
        rows = list(self.rows.values())
        try:
            async with self.service._uow.transaction() as tx:
                now = await tx.clock.now()
                users = list({r.user_id for r in rows})
                found = await tx.imports.users_exist(company_id, self.job.office_id, users)
                if found != len(users):
                    raise _Fail(
                        Failure("ACCOUNT_CHANGED", "a user of the file was deleted meanwhile")
                    )
                existing = [r.license_id for r in rows if r.license_id is not None]
                if await tx.imports.licenses_exist(company_id, existing) != len(existing):
                    raise _Fail(
                        Failure("ACCOUNT_CHANGED", "a license of the file was changed meanwhile")
                    )
                await tx.imports.finalize_import(
                    company_id, self.job.office_id, rows, new, addons, now
                )
                await tx.imports.update_import(
                    company_id,
                    import_id,
                    state="SUCCEEDED",
                    stage=ImportStage.NONE.value,
                    rows_applied=len(rows),
                )
            metrics.import_rows.add(len(rows))  # committed
        except errors.ImportConflict as conflict:
            raise _Fail(import_steps.conflict_failure(conflict.constraint)) from None

    async def rollback(self) -> None:
        """Undoes this attempt's pool effects: pending holds are released, committed
        units returned. Every call is idempotent, so a crash here is resumed safely."""
        company_id = self.job.company_id
        recorded = await self._recorded()
        by_index = {s.index: s for s in self.steps}

        def undo(held: StoredStep) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                step = by_index.get(held.step) or Step(held.step, held.license_type, ())
                if held.hold_id is None:
                    return
                if not held.committed:
                    try:
                        await self.pool.release(
                            self._rid("release", step), company_id, held.hold_id
                        )
                        return
                    except FailedPrecondition as error:
                        if error.reason != Reason.HOLD_NOT_PENDING.name:
                            raise
                        # committed after all (a crash before it was recorded)
                await self.pool.return_units(self._rid("undo", step), company_id, held.unit_ids)

            return call

        try:
            await self._parallel([undo(s) for s in recorded.values()])
        except DomainError:
            log.exception("rolling back import %s failed; will retry", self.job.import_id)
            raise

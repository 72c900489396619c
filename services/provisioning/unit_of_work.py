"""Provisioning's transactions: its repositories bound to one connection (`Tx`), and the
unit of work that hands them out, the only place provisioning opens connections and
transactions.

Besides transactions, a use case may take a session lock (one import runner across
replicas) and ask what a database failure means for its caller (`failure`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from libs.common.clock import Clock
from libs.common.errors import DomainError
from libs.common.idempotency import IdempotencyStore, PostgresRequestLog, RequestLog
from libs.common.reasons import Reason
from libs.common.unit_of_work import PostgresUnitOfWork, UnitOfWork
from services.provisioning.repository import locks
from services.provisioning.repository.clock import TxClock
from services.provisioning.repository.imports import Imports
from services.provisioning.repository.licenses import Licenses
from services.provisioning.repository.operations import Operations
from services.provisioning.repository.users import Users

SCHEMA = "provisioning"

# Failures of the database connection, as opposed to a statement the database refused.
DATABASE_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


@dataclass(frozen=True, slots=True)
class Tx:
    """The repositories of one transaction."""

    clock: TxClock
    users: Users
    licenses: Licenses
    operations: Operations
    imports: Imports
    requests: RequestLog


class ProvisioningUnitOfWork(UnitOfWork[Tx], Protocol):
    """Provisioning's transactions, and a session lock."""

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Whether this process holds the lock `name` (it is held until the block ends)."""
        ...

    def failure(self, error: Exception) -> Exception:
        """The error a caller is answered with for `error`: domain errors as they are; a
        database that does not answer, UNAVAILABLE; a transaction the database aborted,
        ABORTED; anything else as it is."""
        ...

    def is_outage(self, error: BaseException) -> bool:
        """Whether `error` is the database (or its connection) failing, not a refusal."""
        ...


class PostgresProvisioningUnitOfWork(PostgresUnitOfWork[Tx]):
    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        async with locks.exclusive(self._db, name) as got:
            yield got

    def failure(self, error: Exception) -> Exception:
        if isinstance(error, DomainError):
            return error
        if isinstance(error, DATABASE_DOWN):
            return Reason.DATABASE_UNAVAILABLE.error(
                "the database did not answer; retry with the same request_id"
            )
        if isinstance(error, asyncpg.TransactionRollbackError):
            return Reason.CONCURRENT_CHANGE.error(
                "the request was interrupted; retry with the same request_id"
            )
        return error

    def is_outage(self, error: BaseException) -> bool:
        return isinstance(error, (*DATABASE_DOWN, asyncpg.PostgresError))


def unit_of_work(
    db: asyncpg.Pool, clock: Clock, replica: asyncpg.Pool | None = None
) -> PostgresProvisioningUnitOfWork:
    """Provisioning's unit of work on `db`; `clock` gives every transaction its instant."""
    requests = IdempotencyStore(SCHEMA)

    def bind(conn: asyncpg.Connection) -> Tx:
        return Tx(
            clock=TxClock(conn, clock),
            users=Users(conn),
            licenses=Licenses(conn),
            operations=Operations(conn),
            imports=Imports(conn),
            requests=PostgresRequestLog(conn, requests),
        )

    return PostgresProvisioningUnitOfWork(db, bind, replica)

"""Which exceptions mean "the database cannot be reached" (UNAVAILABLE), and which are
failures that would happen again the same way (a bug or a query: INTERNAL)."""

import asyncpg
import pytest

from libs.common.database_outage import is_database_unreachable


def _from(cause: BaseException, error: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
        FileNotFoundError(2, "No such file or directory"),  # the server's unix socket is gone
        TimeoutError(),  # connecting took too long
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to unexpected postmaster exit"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another process"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InterfaceError(
            "cannot call Transaction.rollback(): the underlying connection is closed"
        ),
        asyncpg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
        _from(ConnectionResetError(), RuntimeError("wrapped")),
    ],
    ids=lambda e: f"{type(e).__name__}:{e}",
)
def test_unreachable(error: BaseException) -> None:
    assert is_database_unreachable(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        KeyError("a bug"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.UndefinedTableError('relation "x" does not exist'),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.DataError("invalid input for query argument"),
        asyncpg.InternalClientError("PoolConnectionHolder.release() called on a free holder"),
    ],
    ids=lambda e: f"{type(e).__name__}:{e}",
)
def test_not_unreachable(error: BaseException) -> None:
    assert not is_database_unreachable(error)


def test_a_cycle_of_causes_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert not is_database_unreachable(first)

"""What every gRPC handler shares, so each handler is only: validate, build the
command, run the use case, convert the result.

- `once` (and `once_for`, of a command and its use case): the mutating-call ceremony.
  The request's `request_id` is claimed in the use case's transaction, the response
  stored with the effect, and a replay answered with the stored response, untouched. The
  handler returns the response's bytes: the server sends them as they are (no second
  encoding; see `error_status`).
- `mutation`: the whole handler of a one-transaction mutation, from its converter, its
  use case and its encoder (a servicer's `SetX = mutation(convert.set_x, ...)`).
- `once_after`: the same for a mutation that calls a peer before its one transaction: a
  request already done is answered from its stored response (`stored_response`) without
  calling the peer again.
- pages: page size and token of a list request, and the next token of a page.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol, TypeVar, cast

from google.protobuf.message import Message

from libs.common import call_context
from libs.common.errors import InvalidArgument
from libs.common.idempotency import IdempotencyKey, RequestLog, key_for
from libs.common.unit_of_work import UnitOfWork

P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")


class HasRequests(Protocol):
    """A transaction that can claim request_ids (every service's `Tx`)."""

    @property
    def requests(self) -> RequestLog: ...


TxR = TypeVar("TxR", bound=HasRequests)


class OfCompany(Protocol):
    """A command of one company (every mutating command)."""

    @property
    def company_id(self) -> uuid.UUID: ...


C = TypeVar("C", bound=OfCompany)
Req = TypeVar("Req")  # a request message (or a protocol several requests satisfy)
TxR_co = TypeVar("TxR_co", bound=HasRequests, covariant=True)


class Serving(Protocol[TxR_co]):
    """A servicer, as its handlers see it: the unit of work they run use cases on."""

    @property
    def _uow(self) -> UnitOfWork[TxR_co]: ...


def method_name() -> str:
    """The full name of the method being served ("/licensing.pool.v1.PoolService/Acquire")."""
    call = call_context.current()
    if call is None:
        raise RuntimeError("not serving a call")
    return call.method


async def once(
    uow: UnitOfWork[TxR],
    request: Message,
    company_id: uuid.UUID,
    effect: Callable[[TxR], Awaitable[R]],
    encode: Callable[[R], Message],
) -> bytes:
    """Runs a one-transaction use case at most once per (company, request_id)."""
    key = key_for(method_name(), company_id, request)
    async with uow.transaction() as tx:
        stored = await tx.requests.claim(key)
        if stored is not None:
            return stored
        response = encode(await effect(tx)).SerializeToString()
        await tx.requests.complete(key, response)
    return response


async def once_for(
    uow: UnitOfWork[TxR],
    request: Message,
    command: C,
    use_case: Callable[[C, TxR], Awaitable[R]],
    encode: Callable[[R], Message],
) -> bytes:
    """`once` for a use case of (command, transaction), of the command's company."""
    return await once(uow, request, command.company_id, partial(use_case, command), encode)


def mutation(
    command: Callable[[Req], C],
    use_case: Callable[[C, TxR], Awaitable[R]],
    encode: Callable[[R], Message],
) -> Callable[[Serving[TxR], Req, object], Awaitable[bytes]]:
    """The handler of a one-transaction mutation: the request's command (`command`
    checks its fields), `use_case` on it at most once (`once_for`), the result encoded."""

    async def handle(servicer: Serving[TxR], request: Req, context: object) -> bytes:
        message = cast(Message, request)  # what gRPC hands a handler is the message
        return await once_for(servicer._uow, message, command(request), use_case, encode)

    return handle


async def replayed(requests: RequestLog, key: IdempotencyKey) -> bytes | None:
    """The stored response of an already completed request, if any (claims nothing);
    REQUEST_ID_REUSED if the request_id was used for another request."""
    found = (await requests.lookup([key])).get(key.ident)
    if isinstance(found, InvalidArgument):
        raise found
    return found


async def stored_response(uow: UnitOfWork[TxR], key: IdempotencyKey) -> bytes | None:
    """`replayed`, read outside a transaction."""
    async with uow.reading() as tx:
        return await replayed(tx.requests, key)


async def once_after(
    uow: UnitOfWork[TxR],
    request: Message,
    company_id: uuid.UUID,
    run: Callable[[], Awaitable[P]],
    record: Callable[[P, TxR], Awaitable[R]],
    encode: Callable[[R], Message],
) -> bytes:
    """A mutation that calls a peer (`run`, whose calls carry request_ids derived from
    the caller's, so a retry replays them), then records its result (`record`) with the
    request_id in one transaction: at most once per (company, request_id). A request
    already done is answered from its stored response, without calling the peer."""
    stored = await stored_response(uow, key_for(method_name(), company_id, request))
    if stored is not None:
        return stored
    result = await run()
    return await once(uow, request, company_id, partial(record, result), encode)


def next_page_token(
    items: Sequence[T], size: int, token_of: Callable[[T], str]
) -> tuple[Sequence[T], str]:
    """A page of `size` from `items` fetched with `size + 1`, and the next page's token
    ("" on the last page)."""
    if len(items) > size:
        return items[:size], token_of(items[size - 1])
    return items, ""

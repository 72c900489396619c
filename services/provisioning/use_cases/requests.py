"""Requests already answered: the stored response of a request_id, for use cases whose
peer calls come before their transaction (a replay must not call the peer again)."""

from __future__ import annotations

from libs.common.errors import InvalidArgument
from libs.common.idempotency import IdempotencyKey
from services.provisioning.unit_of_work import ProvisioningUnitOfWork, Tx


async def replayed(tx: Tx, key: IdempotencyKey) -> bytes | None:
    """The stored response of an already completed request, if any; REQUEST_ID_REUSED if
    the request_id was used for another request."""
    found = (await tx.requests.lookup([key])).get(key.ident)
    if isinstance(found, InvalidArgument):
        raise found
    return found


async def stored_response(uow: ProvisioningUnitOfWork, key: IdempotencyKey) -> bytes | None:
    async with uow.reading() as tx:
        return await replayed(tx, key)

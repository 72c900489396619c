"""Background work: request_ids past their retention are dropped."""

from __future__ import annotations

import asyncio
import logging

from libs.common.database_outage import is_database_unreachable
from services.credits.unit_of_work import CreditsUnitOfWork

log = logging.getLogger(__name__)


async def purge_request_ids(
    uow: CreditsUnitOfWork, retention_hours: int, interval_seconds: float
) -> None:
    """Purges idempotency keys past their retention, every interval, until cancelled."""
    while True:
        try:
            async with uow.reading() as tx:
                await tx.request_ids.purge(retention_hours)
        except Exception as error:
            if not is_database_unreachable(error):  # the database watch logs outages
                log.warning("idempotency purge failed; will retry", exc_info=True)
        await asyncio.sleep(interval_seconds)

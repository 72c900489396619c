import pytest

from libs.common.clock import FakeClock
from licensing.pool.v1 import pool_pb2 as pb
from tests.support.pool import Company

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_claim_from_pool_after_grace(company: Company, clock: FakeClock) -> None:
    await company.office("a", "USD")
    await company.office("b", "USD")
    await company.add("a", "connect", 2)
    got = await company.acquire("a", "connect", 2)
    assert [t.source for t in got.receipt.taken] == [pb.ALLOCATION_SOURCE_OWN_SPARE]
    await company.enable("USD")
    await company.give_back([got.units[0].unit_id])
    clock.advance(minutes=31)
    claimed = await company.acquire("b", "connect", 1)
    assert claimed.units[0].unit_id == got.units[0].unit_id
    assert [t.source for t in claimed.receipt.taken] == [pb.ALLOCATION_SOURCE_POOL]

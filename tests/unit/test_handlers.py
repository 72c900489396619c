"""The mutating-call ceremony: once per request_id, the response stored with the
effect, a failed request leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from libs.common import call_context
from libs.common.errors import InvalidArgument
from libs.common.handlers import once
from licensing.pool.v1 import pool_pb2 as pb
from tests.fakes.unit_of_work import InMemoryRequestLog, InMemoryUnitOfWork, RequestTable

COMPANY = uuid.uuid4()


@dataclass
class State:
    requests: RequestTable = field(default_factory=RequestTable)
    offices: list[str] = field(default_factory=list)


@dataclass
class Tx:
    state: State

    @property
    def requests(self) -> InMemoryRequestLog:
        return InMemoryRequestLog(self.state.requests)


def put(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
    async def effect(tx: Tx) -> str:
        tx.state.offices.append(name)
        if fail:
            raise InvalidArgument("INVALID_FIELD", "refused after the effect began")
        return name

    return effect


def encode(name: str) -> pb.PutOfficeResponse:
    return pb.PutOfficeResponse(office=pb.Office(office_id=name))


@pytest.fixture(autouse=True)
def serving() -> Iterator[None]:
    call = call_context.begin("/licensing.pool.v1.PoolService/PutOffice", None)
    yield
    call_context.end(call)


async def test_a_replay_returns_the_stored_bytes_without_a_second_effect() -> None:
    uow = InMemoryUnitOfWork(State(), Tx)
    request = pb.PutOfficeRequest(request_id="r1", office=pb.Office(office_id="a"))
    first = await once(uow, request, COMPANY, put("a"), encode)
    again = await once(uow, request, COMPANY, put("a"), encode)
    assert first == again == encode("a").SerializeToString()
    assert uow.state.offices == ["a"]


async def test_another_payload_under_the_same_id_is_refused() -> None:
    uow = InMemoryUnitOfWork(State(), Tx)
    await once(uow, pb.PutOfficeRequest(request_id="r1"), COMPANY, put("a"), encode)
    other = pb.PutOfficeRequest(request_id="r1", office=pb.Office(office_id="b"))
    with pytest.raises(InvalidArgument) as refused:
        await once(uow, other, COMPANY, put("b"), encode)
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert uow.state.offices == ["a"]


async def test_a_failed_request_leaves_no_effect_and_no_claim() -> None:
    uow = InMemoryUnitOfWork(State(), Tx)
    request = pb.PutOfficeRequest(request_id="r1")
    with pytest.raises(InvalidArgument):
        await once(uow, request, COMPANY, put("a", fail=True), encode)
    assert uow.state.offices == []
    assert await once(uow, request, COMPANY, put("a"), encode)  # may be retried
    assert uow.state.offices == ["a"]

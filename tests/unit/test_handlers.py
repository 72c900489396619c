"""The mutating-call ceremony: once per request_id, the response stored with the
effect, a failed request leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from libs.common import call_context
from libs.common.errors import InvalidArgument, required
from libs.common.handlers import mutation, once, once_after
from libs.common.unit_of_work import read_one
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


async def test_read_one_answers_what_it_found_or_the_error_of_its_key() -> None:
    uow = InMemoryUnitOfWork(State(offices=["a"]), Tx)

    async def office(tx: Tx, name: str) -> str | None:
        return name if name in tx.state.offices else None

    def office_not_found(name: str) -> InvalidArgument:
        return InvalidArgument("OFFICE_NOT_FOUND", f"office {name} not found")

    assert await read_one(uow, lambda tx: office(tx, "a"), office_not_found, "a") == "a"
    with pytest.raises(InvalidArgument) as missing:
        await read_one(uow, lambda tx: office(tx, "b"), office_not_found, "b")
    assert (missing.value.reason, missing.value.message) == (
        "OFFICE_NOT_FOUND",
        "office b not found",
    )
    assert required(0, office_not_found, "zero") == 0  # only None is missing


async def test_once_after_answers_a_replay_without_running_the_peer_call_again() -> None:
    uow = InMemoryUnitOfWork(State(), Tx)
    calls: list[str] = []

    async def in_the_peer() -> str:
        calls.append("peer")
        return "a"

    async def record(name: str, tx: Tx) -> str:
        tx.state.offices.append(name)
        return name

    request = pb.PutOfficeRequest(request_id="r1", office=pb.Office(office_id="a"))
    first = await once_after(uow, request, COMPANY, in_the_peer, record, encode)
    again = await once_after(uow, request, COMPANY, in_the_peer, record, encode)
    assert first == again == encode("a").SerializeToString()
    assert calls == ["peer"]
    assert uow.state.offices == ["a"]
    other = pb.PutOfficeRequest(request_id="r1", office=pb.Office(office_id="b"))
    with pytest.raises(InvalidArgument) as refused:
        await once_after(uow, other, COMPANY, in_the_peer, record, encode)
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert calls == ["peer"]


async def test_a_mutation_handler_builds_the_command_and_runs_its_use_case_once() -> None:
    @dataclass(frozen=True)
    class Named:
        company_id: uuid.UUID
        name: str

    async def put_named(command: Named, tx: Tx) -> str:
        return await put(command.name)(tx)

    def named(request: pb.PutOfficeRequest) -> Named:
        if not request.office.office_id:
            raise InvalidArgument("INVALID_FIELD", "office_id: is required")
        return Named(COMPANY, request.office.office_id)

    class Servicer:
        PutOffice = mutation(named, put_named, encode)

        def __init__(self) -> None:
            self._uow = InMemoryUnitOfWork(State(), Tx)

    servicer = Servicer()
    request = pb.PutOfficeRequest(request_id="r1", office=pb.Office(office_id="a"))
    first = await servicer.PutOffice(request, None)
    assert await servicer.PutOffice(request, None) == first == encode("a").SerializeToString()
    assert servicer._uow.state.offices == ["a"]
    with pytest.raises(InvalidArgument):  # the converter's checks come first
        await servicer.PutOffice(pb.PutOfficeRequest(request_id="r2"), None)
    assert servicer._uow.state.offices == ["a"]

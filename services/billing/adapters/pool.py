"""The pool service, as billing calls it: one typed gateway on the shared peer client
(`libs/common/peer.py`: the caller's deadline minus a margin, retries only for calls that
carry a request_id, the pool's reasons passed on as registered reasons, POOL_UNAVAILABLE
when the pool cannot be reached)."""

from __future__ import annotations

from libs.common.peer import Peer, PeerSettings
from libs.common.reasons import Reason
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["PoolService"]


class PoolGateway:
    """Typed calls to licensing.pool.v1.PoolService."""

    def __init__(self, address: str, settings: PeerSettings | None = None) -> None:
        self._peer = Peer(
            address, pool_pb2_grpc.PoolServiceStub, SERVICE, Reason.POOL_UNAVAILABLE, settings
        )
        self._stub = self._peer.stub

    async def close(self) -> None:
        await self._peer.close()

    async def put_office(self, request: pb.PutOfficeRequest) -> pb.PutOfficeResponse:
        return await self._peer.call(self._stub.PutOffice, request)

    async def get_pool(self, company_id: str, currency: str) -> pb.GetPoolResponse:
        return await self._peer.call(
            self._stub.GetPool, pb.GetPoolRequest(company_id=company_id, currency=currency)
        )

    async def reserve(self, request: pb.ReserveRequest) -> pb.ReserveResponse:
        return await self._peer.call(self._stub.Reserve, request)

    async def commit(self, request: pb.CommitRequest) -> pb.CommitResponse:
        return await self._peer.call(self._stub.Commit, request)

    async def release(self, request: pb.ReleaseRequest) -> pb.ReleaseResponse:
        return await self._peer.call(self._stub.Release, request)

    async def get_hold(self, company_id: str, hold_id: str) -> pb.GetHoldResponse:
        return await self._peer.call(
            self._stub.GetHold, pb.GetHoldRequest(company_id=company_id, hold_id=hold_id)
        )

    async def add_units(self, request: pb.AddUnitsRequest) -> pb.AddUnitsResponse:
        return await self._peer.call(self._stub.AddUnits, request)

    async def mark_for_removal(
        self, request: pb.MarkForRemovalRequest
    ) -> pb.MarkForRemovalResponse:
        return await self._peer.call(self._stub.MarkForRemoval, request)

    async def restore_from_removal(
        self, request: pb.RestoreFromRemovalRequest
    ) -> pb.RestoreFromRemovalResponse:
        return await self._peer.call(self._stub.RestoreFromRemoval, request)

    async def terminate_units(self, request: pb.TerminateUnitsRequest) -> pb.TerminateUnitsResponse:
        return await self._peer.call(self._stub.TerminateUnits, request)

    async def snapshot(self, company_id: str) -> pb.GetSnapshotResponse:
        return await self._peer.call(
            self._stub.GetSnapshot, pb.GetSnapshotRequest(company_id=company_id)
        )

    async def list_units(self, request: pb.ListUnitsRequest) -> list[pb.Unit]:
        """Every unit matching the filters (all pages)."""
        found: list[pb.Unit] = []
        page = pb.ListUnitsRequest()
        page.CopyFrom(request)
        page.page_size = 1000
        while True:
            response: pb.ListUnitsResponse = await self._peer.call(self._stub.ListUnits, page)
            found.extend(response.units)
            if not response.next_page_token:
                return found
            page.page_token = response.next_page_token

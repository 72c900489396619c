"""Two pool-service processes on one database: still no unit handed out twice, and one
client's calls spread over both."""

import asyncio
import json
from contextlib import AsyncExitStack

import asyncpg
import pytest
from grpc._cython import cygrpc  # channelz, to see which address each call went to

from licensing import client
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc
from tests.support import tls
from tests.support.pool import Company, rid
from tests.support.processes import spawned
from tests.support.races import assert_two_replicas_never_hand_out_a_unit_twice

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_two_replicas_never_hand_out_a_unit_twice(
    database_url: str, db: asyncpg.Pool
) -> None:
    env = {"POOL_DATABASE_URL": database_url, "POOL_PORT": "0", "POOL_LOG_LEVEL": "WARNING"}
    await assert_two_replicas_never_hand_out_a_unit_twice(env, db)


def subchannel_calls(target: str) -> tuple[dict[str, int], dict[str, int]]:
    """Calls started on, and connections made to, each address of the channel to
    `target` (gRPC's channelz)."""
    top = json.loads(cygrpc.channelz_get_top_channels(0))
    (channel,) = [c for c in top.get("channel", []) if c["data"].get("target") == target]
    calls: dict[str, int] = {}
    connections: dict[str, int] = {}
    for ref in channel.get("subchannelRef", []):
        sub = json.loads(cygrpc.channelz_get_subchannel(int(ref["subchannelId"])))["subchannel"]
        address = sub["data"]["target"].removeprefix("ipv4:")
        calls[address] = calls.get(address, 0) + int(sub["data"].get("callsStarted", 0))
        connections[address] = connections.get(address, 0) + sum(
            e["description"].endswith("changed to READY") for e in sub["data"]["trace"]["events"]
        )
    return calls, connections


async def test_calls_spread_over_both_replicas_as_connections_age(database_url: str) -> None:
    """One channel over both replicas' addresses (what a headless Service's DNS gives):
    round_robin sends calls to both; servers close connections after their maximum age
    and calls go on, answered, on the new ones."""
    env = {
        "POOL_DATABASE_URL": database_url,
        "POOL_PORT": "0",
        "POOL_LOG_LEVEL": "WARNING",
        "POOL_MAX_CONNECTION_AGE_SECONDS": "0.5",
        "POOL_MAX_CONNECTION_AGE_GRACE_SECONDS": "5",
    }
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(spawned("pool", env)) for _ in range(2)]
        target = "ipv4:" + ",".join(r.address for r in replicas)
        # The client package's channel, as the services' own (mutual TLS as the operator;
        # the certificates are checked against the list's first host, 127.0.0.1).
        channel = client.aio_channel(target, tls=tls.client_tls())
        stack.push_async_callback(channel.close)
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        company = Company(stub, rid(), {})
        office = await company.office("hq", "EUR")

        loop = asyncio.get_running_loop()
        started = loop.time()
        answered = 0
        while loop.time() - started < 2.0:  # past several connection ages
            results = await asyncio.gather(
                *(
                    stub.GetOffice(
                        pool_pb2.GetOfficeRequest(company_id=company.company_id, office_id=office),
                        timeout=5,
                    )
                    for _ in range(10)
                )
            )
            answered += sum(r.office.office_id == office for r in results)
            await asyncio.sleep(0.02)

        calls, connections = subchannel_calls(target)
        assert set(calls) >= {r.address for r in replicas}
        total = sum(calls.values())
        assert total >= answered > 100
        for replica in replicas:  # round_robin: about half each
            assert calls[replica.address] > total * 0.3, calls
            assert connections[replica.address] >= 3, connections  # aged out, connected again

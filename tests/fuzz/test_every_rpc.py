"""Every RPC of every service, found in the generated descriptors, answers hostile and
malformed requests with a precise status (never INTERNAL or UNKNOWN), writes nothing when
it refuses, and leaves every service healthy.

Size and seed: FUZZ_EXAMPLES (requests per RPC) and FUZZ_SEED; `pytest -m fuzz` runs only
this. Realistic values come from a small data set made at the start and from the answers
of earlier calls, so a rerun with the same seed draws much the same requests, not exactly
them (the ids are new each run); each finding prints the request it was found with."""

from __future__ import annotations

import pytest

from tests.fuzz.campaign import Campaign, report
from tests.fuzz.conftest import Budget, Fuzzed
from tests.fuzz.rpcs import Rpc, every_rpc

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.fuzz]

RPCS = every_rpc()


@pytest.mark.parametrize("rpc", RPCS, ids=[rpc.id for rpc in RPCS])
async def test_rpc_answers_hostile_requests_precisely(
    rpc: Rpc, fuzzed: Fuzzed, budget: Budget, request: pytest.FixtureRequest
) -> None:
    channel = fuzzed.platform.channels.get(rpc.service.full_name)
    assert channel is not None, f"{rpc.service.full_name} is not served by the fuzzed platform"
    campaign = Campaign(
        rpc,
        channel,
        fuzzed.tables,
        fuzzed.corpus,
        budget.seed,
        budget.examples,
        [
            other.method.input_type
            for other in RPCS
            if other.method.input_type != rpc.method.input_type
        ],
    )
    findings = await campaign.run()
    unhealthy = await fuzzed.platform.unhealthy()
    outcomes = ", ".join(f"{label} {n}" for label, n in campaign.outcomes.most_common())
    print(f"{rpc.id}: {outcomes}")
    if findings or unhealthy:
        lines = [
            f"{rpc.id}: {len(findings)} distinct findings in {budget.examples} requests; "
            f"rerun with this seed: FUZZ_SEED={budget.seed} "
            f"FUZZ_EXAMPLES={budget.examples} pytest '{request.node.nodeid}'",
            *report(findings),
            *(f"  unhealthy afterwards: {problem}" for problem in unhealthy),
            f"  answers: {outcomes}",
        ]
        pytest.fail("\n".join(lines), pytrace=False)

"""Two replicas of every service (`LICENSING_REPLICAS=2`), each caller given the list of a
service's addresses and balancing its calls over them: the `licensing` command (the
client package), the services' calls to their peers (the shared peer client) and the
races' clients. The demo story still adds up, the races still hold, and every replica
served calls (told apart by the spans each process writes, with its instance id)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from licensing import client
from licensing.credits.v1 import credits_pb2_grpc
from licensing.pool.v1 import pool_pb2_grpc
from licensing_cli.demo_platform import SERVICE_NAMES, Platform, launched
from tests.support.credits import CreditsCompany, assert_exactly_the_affordable_usages_recorded
from tests.support.demo_story import GRACE_SECONDS, assert_the_story_adds_up, play_on
from tests.support.races import assert_database_matches, pool_with_claimable_units, race_acquire

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

REPLICAS = 2
# The story's grace period: its steps within one grace period are a handful of
# `licensing` commands, slower with eight service processes on the machine.
GRACE = 2 * GRACE_SECONDS


def spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def served_by(all_spans: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    """The spans of calls `service` served (its server spans: its own RPCs' names)."""
    prefix = f"/licensing.{service}.v1."
    return [s for s in all_spans if s["service"] == service and s["name"].startswith(prefix)]


def assert_all_served(calls: list[dict[str, Any]], what: str) -> Counter[str]:
    """Each of the REPLICAS instances served some of `calls`; how many each."""
    per_instance = Counter(s["instance"] for s in calls)
    assert len(per_instance) == REPLICAS, (what, per_instance)
    return per_instance


def assert_spread(calls: list[dict[str, Any]], what: str) -> None:
    """Calls on long-lived channels (round_robin picks the next replica per call): each
    instance served a fair part of them."""
    per_instance = assert_all_served(calls, what)
    assert min(per_instance.values()) >= len(calls) * 0.2, (what, per_instance)


def operator_tls(platform: Platform) -> client.Tls:
    """The platform's operator identity, as the `licensing` command presents it."""
    pki = platform.pki
    return client.Tls.from_files(pki / "ca.crt", pki / "operator.crt", pki / "operator.key")


async def run_races(platform: Platform, db: asyncpg.Pool) -> None:
    """The last-unit race and the concurrent credit usage race, each over one balanced
    channel to a service's two replicas."""
    tls = operator_tls(platform)
    pool_channel = client.aio_channel(platform.addresses["pool"], tls=tls)
    credits_channel = client.aio_channel(platform.addresses["credits"], tls=tls)
    try:
        pool = pool_pb2_grpc.PoolServiceStub(pool_channel)
        company = await pool_with_claimable_units(pool, units=60, offices=4)
        outcome = await race_acquire([pool], company, callers=200)
        assert len(outcome.unit_ids) == len(set(outcome.unit_ids)) == 60
        assert outcome.failures == {
            (grpc.StatusCode.FAILED_PRECONDITION, "NO_LICENSE_AVAILABLE"): 140
        }
        await assert_database_matches(db, company, outcome, total=60)

        credits = credits_pb2_grpc.CreditsServiceStub(credits_channel)
        await assert_exactly_the_affordable_usages_recorded(CreditsCompany(credits), [credits])
    finally:
        await pool_channel.close()
        await credits_channel.close()


async def test_two_replicas_of_each_service_share_the_story_and_the_races(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    traces = tmp_path / "spans.jsonl"
    env = {f"{name.upper()}_TRACES": str(traces) for name in SERVICE_NAMES}
    platform_cm = launched(
        tmp_path, GRACE, database_url=database_url, replicas=REPLICAS, extra_env=env
    )
    platform = await asyncio.to_thread(platform_cm.__enter__)
    try:
        assert all(a.startswith("ipv4:") for a in platform.addresses.values())
        story, pool_counts = await asyncio.to_thread(play_on, platform, tmp_path, GRACE)
        assert_the_story_adds_up(story, pool_counts)
        await run_races(platform, db)
    finally:
        await asyncio.to_thread(platform_cm.__exit__, None, None, None)

    written = spans(traces)
    # Every replica served calls. Most calls of the story come from `licensing`
    # commands, one process (and channel) each, which start on whichever replica
    # answers first: how many each served is left to chance.
    for service in SERVICE_NAMES:
        assert_all_served(served_by(written, service), service)
    # The races' calls, on one channel per service, alternate between the replicas.
    for service, method in (("pool", "Acquire"), ("credits", "RecordUsage")):
        calls = [s for s in served_by(written, service) if s["name"].endswith(f"/{method}")]
        assert_spread(calls, f"{service} {method}")
    # The services' own calls to the pool (billing's and provisioning's peer clients)
    # went to both pool replicas too.
    by_id = {s["span_id"]: s for s in written}
    from_peers = [
        s
        for s in served_by(written, "pool")
        if by_id.get(s["parent_id"], {}).get("service") in ("billing", "provisioning")
    ]
    assert from_peers
    assert_spread(from_peers, "pool, called by its peers")

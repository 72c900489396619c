"""Setup callbacks: seed a pool service through its API before a scenario loads it.

A setup is a function `(address) -> Workload`. It registers offices (`PutOffice`), adds
units (`AddUnits`, SPARE in the first office) and enables the pool (`EnablePool`), so
all the units rest in the company's pool, claimable at once. The workload lists the
(company, office) pairs the generator's callers pick from.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.harness import tls as bench_tls
from bench.scenarios.acquire_call import CURRENCY, LICENSE_TYPE
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc

ADD_UNITS_MAX = 10_000  # AddUnitsRequest.quantity is at most 10000
_MESSAGE_LIMIT = 512 * 1024 * 1024  # EnablePool lists every unit it moves


@dataclass(frozen=True)
class Workload:
    """What a setup created: the callers' choices and the units seeded."""

    choices: tuple[dict[str, str], ...]  # {"company_id", "office_id"} per choice
    units: int
    companies: tuple[str, ...]


Setup = Callable[[str], Workload]


class PoolAdmin:
    """The few PoolService calls a setup needs (blocking client)."""

    def __init__(self, address: str) -> None:
        self._channel = bench_tls.channel(
            address,
            options=[
                ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
                ("grpc.max_send_message_length", _MESSAGE_LIMIT),
            ],
        )
        self._stub = pool_pb2_grpc.PoolServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def put_office(self, company_id: str, office_id: str, primary: bool) -> None:
        office = pool_pb2.Office(
            company_id=company_id,
            office_id=office_id,
            currency=CURRENCY,
            plan_kind=pool_pb2.PLAN_KIND_BUNDLE,
            primary=primary,
        )
        request = pool_pb2.PutOfficeRequest(request_id=str(uuid.uuid4()), office=office)
        self._stub.PutOffice(request, timeout=30)

    def add_units(
        self, company_id: str, office_id: str, count: int, license_type: str = LICENSE_TYPE
    ) -> None:
        """`count` SPARE units of `license_type` in the office, in requests of at most 10000."""
        while count > 0:
            batch = min(count, ADD_UNITS_MAX)
            request = pool_pb2.AddUnitsRequest(
                request_id=str(uuid.uuid4()),
                company_id=company_id,
                office_id=office_id,
                license_type=license_type,
                quantity=batch,
            )
            self._stub.AddUnits(request, timeout=300)
            count -= batch

    def enable_pool(self, company_id: str) -> None:
        request = pool_pb2.EnablePoolRequest(
            request_id=str(uuid.uuid4()), company_id=company_id, currency=CURRENCY
        )
        self._stub.EnablePool(request, timeout=600)


def seed_company(admin: PoolAdmin, offices: int, units: int) -> tuple[str, list[dict[str, str]]]:
    """One company with `offices` offices and `units` units in its (enabled) pool."""
    company_id = str(uuid.uuid4())
    office_ids = [str(uuid.uuid4()) for _ in range(offices)]
    for index, office_id in enumerate(office_ids):
        admin.put_office(company_id, office_id, primary=index == 0)
    admin.add_units(company_id, office_ids[0], units)
    admin.enable_pool(company_id)
    return company_id, [{"company_id": company_id, "office_id": o} for o in office_ids]


def hot_pool(units: int, offices: int = 8) -> Setup:
    """One company, one currency: every caller allocates from the same pool."""

    def setup(address: str) -> Workload:
        admin = PoolAdmin(address)
        try:
            company_id, choices = seed_company(admin, offices, units)
        finally:
            admin.close()
        return Workload(tuple(choices), units, (company_id,))

    return setup


def spread_pools(units_per_company: Sequence[int], offices: int = 1) -> Setup:
    """One company (and pool) per entry; with one office each, choice i is company i."""

    def setup(address: str) -> Workload:
        admin = PoolAdmin(address)
        choices: list[dict[str, str]] = []
        companies: list[str] = []
        try:
            for units in units_per_company:
                company_id, company_choices = seed_company(admin, offices, units)
                companies.append(company_id)
                choices.extend(company_choices)
        finally:
            admin.close()
        return Workload(tuple(choices), sum(units_per_company), tuple(companies))

    return setup


def zipf_shares(count: int, s: float) -> list[float]:
    """P(i) proportional to 1/(i+1)^s, as the generator's Zipf picker draws."""
    weights = [1 / math.pow(i + 1, s) for i in range(count)]
    total = sum(weights)
    return [w / total for w in weights]

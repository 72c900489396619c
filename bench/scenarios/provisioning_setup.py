"""S9's setup (not timed): one office with the units the file needs, the users, the file.

Through the APIs: one office (pool `PutOffice`), the units as SPARE units of the office
(pool `AddUnits`: a user license per user, a `phone_system` base and the add-ons per
row), and the users (provisioning `CreateUser`, many in flight). The file has one row per
user: a unique extension key, a unique number, the user (by id) and the add-ons.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from dataclasses import dataclass

import grpc

from bench.scenarios.pool_seeding import PoolAdmin
from licensing.provisioning.v1 import provisioning_pb2 as prov_pb2
from licensing.provisioning.v1 import provisioning_pb2_grpc as prov_grpc

USER_LICENSE = "connect"
BASE_LICENSE = "phone_system"
ADDONS = ("device_ip_phone", "call_recording")
CREATE_USER_CONCURRENCY = 32


@dataclass(frozen=True)
class Office:
    company_id: str
    office_id: str


def seed_pool(address: str, rows: int) -> Office:
    """One office with, as SPARE units, everything the users and the file need."""
    office = Office(str(uuid.uuid4()), str(uuid.uuid4()))
    admin = PoolAdmin(address)
    try:
        admin.put_office(office.company_id, office.office_id, primary=True)
        for license_type in (USER_LICENSE, BASE_LICENSE, *ADDONS):
            admin.add_units(office.company_id, office.office_id, rows, license_type)
    finally:
        admin.close()
    return office


async def _create_users(address: str, office: Office, count: int) -> list[str]:
    users: list[str] = [""] * count
    gate = asyncio.Semaphore(CREATE_USER_CONCURRENCY)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = prov_grpc.ProvisioningServiceStub(channel)

        async def create(index: int) -> None:
            request = prov_pb2.CreateUserRequest(
                request_id=str(uuid.uuid4()),
                company_id=office.company_id,
                office_id=office.office_id,
                display_name=f"Bench User {index:05d}",
                email=f"user{index:05d}@bench.example",
                license_type=USER_LICENSE,
            )
            async with gate:
                answer = await stub.CreateUser(request, timeout=60)
            users[index] = answer.user.user_id

        await asyncio.gather(*(create(i) for i in range(count)))
    return users


def create_users(address: str, office: Office, count: int) -> list[str]:
    """`count` users of the office (CreateUser, many in flight); their ids in order."""
    return asyncio.run(_create_users(address, office, count))


def csv_file(users: list[str]) -> bytes:
    """One row per user: unique extension key and number, the user's id, the add-ons."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    addon_headers = [f"Addon license {i + 1}" for i in range(len(ADDONS))]
    writer.writerow(["Ext Key", "Number", "User", *addon_headers])
    for index, user_id in enumerate(users):
        writer.writerow([str(10_000 + index), f"+1555{index:07d}", user_id, *ADDONS])
    return out.getvalue().encode()

"""The Acquire call the pool scenarios send, and its size, which the echo baseline mimics."""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from licensing.pool.v1 import pool_pb2

LICENSE_TYPE = "connect"  # poolable, per libs/common/license_catalog.toml
CURRENCY = "USD"


def acquire_template(quantity: int = 1) -> dict[str, Any]:
    """The generator's AcquireRequest template: company and office from the choices."""
    return {
        "request_id": "{{uuid}}",
        "company_id": "{{choice.company_id}}",
        "office_id": "{{choice.office_id}}",
        "license_type": LICENSE_TYPE,
        "quantity": quantity,
    }


def echo_template() -> dict[str, Any]:
    """The echo request: the same fields and sizes as the Acquire template."""
    return acquire_template(1)


def echo_choices() -> tuple[dict[str, str], ...]:
    """Ids for the echo template: echo is about sizes, one pair is enough."""
    return ({"company_id": str(uuid.uuid4()), "office_id": str(uuid.uuid4())},)


def sample_acquire_response(quantity: int = 1) -> pool_pb2.AcquireResponse:
    """A realistic AcquireResponse: `quantity` assigned units taken from the pool."""
    now = Timestamp(seconds=1_767_225_600, nanos=123_456_000)
    company, office = str(uuid.uuid4()), str(uuid.uuid4())
    units = [
        pool_pb2.Unit(
            unit_id=str(uuid.uuid4()),
            company_id=company,
            office_id=office,
            currency=CURRENCY,
            license_type=LICENSE_TYPE,
            state=pool_pb2.UNIT_STATE_ASSIGNED,
            create_time=now,
            update_time=now,
        )
        for _ in range(quantity)
    ]
    receipt = pool_pb2.Receipt(
        receipt_id=str(uuid.uuid4()),
        company_id=company,
        office_id=office,
        currency=CURRENCY,
        license_type=LICENSE_TYPE,
        requested=quantity,
        taken=[
            pool_pb2.SourceTake(
                source=pool_pb2.ALLOCATION_SOURCE_POOL,
                quantity=quantity,
                unit_ids=[u.unit_id for u in units],
            )
        ],
        create_time=now,
    )
    return pool_pb2.AcquireResponse(units=units, receipt=receipt)


def acquire_response_size(quantity: int = 1) -> int:
    """Serialized bytes of an AcquireResponse for `quantity` units."""
    return sample_acquire_response(quantity).ByteSize()

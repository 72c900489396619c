"""The credits service's setup for S6, through its API: accounts, pooling, one grant.

Per company: credit accounts for its offices (`PutAccount`, no allowance, overage REJECT
so that nothing is recorded without credits to pay for it), unified credit pooling on
(`SetCreditPooling`), and one large grant to the company pool (`GrantCredits`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc

from licensing.credits.v1 import credits_pb2, credits_pb2_grpc

CURRENCY = "USD"
GRANT_MINOR = 1_000_000_000_000  # the most one grant may add; 1 per usage never runs dry


@dataclass(frozen=True)
class CreditsWorkload:
    """What the setup created: the callers' choices, and the grant per company."""

    choices: tuple[dict[str, str], ...]  # {"company_id", "office_id"} per choice
    companies: tuple[str, ...]
    granted_minor: int  # per company


class CreditsAdmin:
    """The few CreditsService calls the setup and the checks need (blocking client)."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = credits_pb2_grpc.CreditsServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def put_account(self, company_id: str, office_id: str, primary: bool) -> None:
        account = credits_pb2.Account(
            company_id=company_id,
            office_id=office_id,
            currency=CURRENCY,
            primary=primary,
            allowance_minor=0,
            overage_policy=credits_pb2.OVERAGE_POLICY_REJECT,
        )
        request = credits_pb2.PutAccountRequest(request_id=str(uuid.uuid4()), account=account)
        self._stub.PutAccount(request, timeout=30)

    def enable_pooling(self, company_id: str) -> None:
        request = credits_pb2.SetCreditPoolingRequest(
            request_id=str(uuid.uuid4()), company_id=company_id, currency=CURRENCY, enabled=True
        )
        self._stub.SetCreditPooling(request, timeout=30)

    def grant_pool(self, company_id: str, amount_minor: int) -> None:
        request = credits_pb2.GrantCreditsRequest(
            request_id=str(uuid.uuid4()),
            company_id=company_id,
            target=credits_pb2.GRANT_TARGET_COMPANY_POOL,
            currency=CURRENCY,
            amount_minor=amount_minor,
            note="bench S6",
        )
        self._stub.GrantCredits(request, timeout=30)

    def check_ledger(self, company_id: str) -> credits_pb2.CheckLedgerResponse:
        request = credits_pb2.CheckLedgerRequest(company_id=company_id)
        response: credits_pb2.CheckLedgerResponse = self._stub.CheckLedger(request, timeout=120)
        return response


def seed_companies(address: str, companies: int, offices: int) -> CreditsWorkload:
    """`companies` companies of `offices` pooled offices, each company pool granted."""
    admin = CreditsAdmin(address)
    choices: list[dict[str, str]] = []
    company_ids: list[str] = []
    try:
        for _ in range(companies):
            company_id = str(uuid.uuid4())
            for index in range(offices):
                office_id = str(uuid.uuid4())
                admin.put_account(company_id, office_id, primary=index == 0)
                choices.append({"company_id": company_id, "office_id": office_id})
            admin.enable_pooling(company_id)
            admin.grant_pool(company_id, GRANT_MINOR)
            company_ids.append(company_id)
    finally:
        admin.close()
    return CreditsWorkload(tuple(choices), tuple(company_ids), GRANT_MINOR)

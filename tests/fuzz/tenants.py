"""A small, real data set made through the public API (two companies: offices, plans,
units, a pool, holds, purchases, an invoice, credit accounts and usage, users, licenses,
an import). Every request and response teaches the corpus, so fuzzed requests can carry
ids that exist."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from licensing.billing.v1 import billing_pb2 as bpb
from licensing.credits.v1 import credits_pb2 as cpb
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.provisioning.v1 import provisioning_pb2 as vpb
from tests.fuzz.corpus import Corpus
from tests.fuzz.platform import Platform
from tests.support.billing import ts

R = TypeVar("R", bound=Message)
PLAN_START = datetime(2025, 11, 1, tzinfo=UTC)
PRICES = {"connect": 1_000, "sell": 1_500, "phone_system": 2_000, "device_ip_phone": 500}
PRICES |= {"call_recording": 300}


def rid() -> str:
    return str(uuid.uuid4())


class Teacher:
    def __init__(self, platform: Platform, corpus: Corpus) -> None:
        self.platform = platform
        self.corpus = corpus

    async def send(self, method: Callable[[Message], Awaitable[R]], request: Message) -> R:
        response = await method(request)
        self.corpus.learn(request)
        self.corpus.learn(response)
        return response

    async def company(self, currency: str, offices: int, rich: bool) -> None:
        """A company with `offices` offices in `currency`; `rich`: the whole story (pool,
        holds, purchases, invoice, usage, licenses, an import) rather than the basics."""
        p = self.platform
        company_id = rid()
        office_ids = [rid() for _ in range(offices)]
        plans = []
        for index, office_id in enumerate(office_ids):
            created = await self.send(
                p.billing.CreatePlan,
                bpb.CreatePlanRequest(
                    request_id=rid(),
                    plan=bpb.Plan(
                        company_id=company_id,
                        office_id=office_id,
                        kind=bpb.PLAN_KIND_BUNDLE,
                        currency=currency,
                        start_time=ts(PLAN_START),
                        primary=index == 0,
                        prices=[
                            bpb.Price(
                                license_type=code,
                                unit_price=bpb.Money(currency_code=currency, amount_minor=amount),
                            )
                            for code, amount in PRICES.items()
                        ],
                    ),
                ),
            )
            plans.append(created.plan)
            await self.send(
                p.credits.PutAccount,
                cpb.PutAccountRequest(
                    request_id=rid(),
                    account=cpb.Account(
                        company_id=company_id,
                        office_id=office_id,
                        currency=currency,
                        primary=index == 0,
                        allowance_minor=1_000,
                        overage_policy=cpb.OVERAGE_POLICY_ALLOW,
                        period_anchor_time=ts(PLAN_START),
                    ),
                ),
            )
        hq = office_ids[0]
        for code, count in {"connect": 6, "sell": 2, "phone_system": 3}.items():
            await self.add_units(company_id, hq, code, count)
        await self.send(
            p.provisioning.CreateUser,
            vpb.CreateUserRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=hq,
                display_name="Ann Example",
                email="ann@example.com",
                license_type="connect",
            ),
        )
        if rich:
            await self.whole_story(company_id, currency, office_ids, plans)

    async def add_units(self, company_id: str, office_id: str, code: str, count: int) -> None:
        await self.send(
            self.platform.pool.AddUnits,
            ppb.AddUnitsRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=office_id,
                license_type=code,
                quantity=count,
            ),
        )

    async def whole_story(
        self, company_id: str, currency: str, office_ids: list[str], plans: list[bpb.Plan]
    ) -> None:
        p = self.platform
        hq, branch = office_ids[0], office_ids[1]
        send = self.send
        for code in ("device_ip_phone", "call_recording"):
            await self.add_units(company_id, hq, code, 2)
        await self.add_units(company_id, branch, "connect", 2)
        await send(
            p.billing.UpdatePlan,
            bpb.UpdatePlanRequest(
                request_id=rid(),
                plan=bpb.Plan(
                    company_id=company_id, plan_id=plans[0].plan_id, prices=plans[0].prices
                ),
                update_mask=FieldMask(paths=["prices"]),
            ),
        )
        await send(
            p.pool.EnablePool,
            ppb.EnablePoolRequest(request_id=rid(), company_id=company_id, currency=currency),
        )
        user = ppb.Assignee(kind=ppb.ASSIGNEE_KIND_USER, id="user-fuzz-1")
        await send(
            p.pool.Reserve,
            ppb.ReserveRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=branch,
                license_type="connect",
                quantity=1,
                ttl_seconds=900,
            ),
        )
        committed = await send(
            p.pool.Reserve,
            ppb.ReserveRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=branch,
                license_type="connect",
                quantity=1,
                ttl_seconds=900,
            ),
        )
        await send(
            p.pool.Commit,
            ppb.CommitRequest(
                request_id=rid(),
                company_id=company_id,
                hold_id=committed.hold.hold_id,
                assignees=[user],
            ),
        )
        acquired = await send(
            p.pool.Acquire,
            ppb.AcquireRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=hq,
                license_type="sell",
                quantity=1,
                assignees=[ppb.Assignee(kind=ppb.ASSIGNEE_KIND_USER, id="user-fuzz-2")],
            ),
        )
        await send(
            p.pool.ReturnUnits,
            ppb.ReturnUnitsRequest(
                request_id=rid(), company_id=company_id, unit_ids=[acquired.units[0].unit_id]
            ),
        )
        quote = await send(
            p.billing.QuoteLicensePurchase,
            bpb.QuoteLicensePurchaseRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=hq,
                license_type="connect",
                quantity=1,
                hold=True,
            ),
        )
        await send(
            p.billing.QuoteLicensePurchase,
            bpb.QuoteLicensePurchaseRequest(
                company_id=company_id, office_id=branch, license_type="sell", quantity=2
            ),
        )
        await send(
            p.billing.PurchaseLicenses,
            bpb.PurchaseLicensesRequest(
                request_id=rid(), company_id=company_id, quote_id=quote.quote.quote_id
            ),
        )
        await send(
            p.billing.PurchaseLicenses,
            bpb.PurchaseLicensesRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=branch,
                license_type="sell",
                quantity=2,
            ),
        )
        await send(
            p.billing.ScheduleRemoval,
            bpb.ScheduleRemovalRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=branch,
                license_type="sell",
                quantity=1,
            ),
        )
        await send(
            p.billing.CloseCycle,
            bpb.CloseCycleRequest(request_id=rid(), company_id=company_id, period="2025-12"),
        )

        await send(
            p.credits.SetCreditPooling,
            cpb.SetCreditPoolingRequest(
                request_id=rid(), company_id=company_id, currency=currency, enabled=True
            ),
        )
        await send(
            p.credits.GrantCredits,
            cpb.GrantCreditsRequest(
                request_id=rid(),
                company_id=company_id,
                target=cpb.GRANT_TARGET_COMPANY_POOL,
                currency=currency,
                amount_minor=5_000,
                note="welcome credits",
            ),
        )
        await send(
            p.credits.SetOfficeCreditCap,
            cpb.SetOfficeCreditCapRequest(
                request_id=rid(), company_id=company_id, office_id=hq, cap_minor=4_000
            ),
        )
        await send(
            p.credits.SetCreditThresholds,
            cpb.SetCreditThresholdsRequest(
                request_id=rid(),
                company_id=company_id,
                currency=currency,
                thresholds=[
                    cpb.CreditThreshold(balance_minor=4_900),
                    cpb.CreditThreshold(percent=50),
                ],
            ),
        )
        await send(
            p.credits.RecordUsage,
            cpb.RecordUsageRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=hq,
                kind=cpb.USAGE_KIND_CALLING,
                amount_minor=1_200,
                occur_time=ts(p.clock.now()),
            ),
        )

        await send(p.credits.ListCreditAlerts, cpb.ListCreditAlertsRequest(company_id=company_id))
        await send(
            p.credits.ListOfficeCreditCaps, cpb.ListOfficeCreditCapsRequest(company_id=company_id)
        )

        users = await send(p.provisioning.ListUsers, vpb.ListUsersRequest(company_id=company_id))
        licensed = await send(
            p.provisioning.AssignLicense,
            vpb.AssignLicenseRequest(
                request_id=rid(),
                company_id=company_id,
                user_id=users.users[0].user_id,
                license_type="phone_system",
            ),
        )
        license_id = licensed.license.license_id
        await send(
            p.provisioning.AddAddons,
            vpb.AddAddonsRequest(
                request_id=rid(),
                company_id=company_id,
                license_id=license_id,
                addon_types=["device_ip_phone"],
            ),
        )
        await send(
            p.provisioning.SetExtension,
            vpb.SetExtensionRequest(
                request_id=rid(),
                company_id=company_id,
                license_id=license_id,
                ext_key="101",
                number="+6567891230",
            ),
        )
        await send(
            p.provisioning.CreateUser,
            vpb.CreateUserRequest(
                request_id=rid(),
                company_id=company_id,
                office_id=hq,
                display_name="Bob",
                license_type="connect",
            ),
        )
        await send(p.provisioning.ListLicenseTypes, vpb.ListLicenseTypesRequest())
        template = await send(
            p.provisioning.GetMassConfigurationTemplate, vpb.GetMassConfigurationTemplateRequest()
        )
        csv = b"Ext Key,Number,User,Addon license 1,Addon license 2\r\n102,6567891231,Bob,,\r\n"
        await send(
            p.provisioning.MassConfigure,
            vpb.MassConfigureRequest(
                company_id=company_id, office_id=hq, content=template.content, validate_only=True
            ),
        )
        started = await send(
            p.provisioning.MassConfigure,
            vpb.MassConfigureRequest(
                import_id="fuzz-import-1", company_id=company_id, office_id=hq, content=csv
            ),
        )
        async for progress in p.provisioning.WatchImport(
            vpb.WatchImportRequest(company_id=company_id, import_id=started.import_job.import_id)
        ):
            self.corpus.learn(progress)
        await send(p.provisioning.SearchLicenses, vpb.SearchLicensesRequest(company_id=company_id))


async def teach(platform: Platform) -> Corpus:
    """The corpus of a main company (two USD offices, the whole story) and a second one
    (one EUR office, the basics)."""
    corpus = Corpus()
    teacher = Teacher(platform, corpus)
    await teacher.company("USD", offices=2, rich=True)
    await teacher.company("EUR", offices=1, rich=False)
    return corpus

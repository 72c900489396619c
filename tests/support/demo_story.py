"""The demo story (`make demo`) played against the launcher, and every number it must
come to, computed by hand from the story."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from licensing_cli.demo import Cli, Story, play
from licensing_cli.demo_platform import Platform

GRACE_SECONDS = 8.0


def play_on(
    platform: Platform, workdir: Path, grace_seconds: float = GRACE_SECONDS
) -> tuple[Story, dict[str, Any]]:
    """The story, with the installed `licensing` command, on a launched platform whose
    pool grace is `grace_seconds`; and after it, the pool's own count of live units per
    currency, to check the invoice with."""
    cli = Cli(dict(platform.cli_env), echo=False)
    story = play(cli, workdir, grace_seconds)
    after = {
        currency: cli.show("", "pool", "show", currency)["counts"] for currency in ("USD", "GBP")
    }
    return story, after


def assert_the_story_adds_up(story: Story, pool_counts: dict[str, Any]) -> None:
    """Every step answered what the story computes by hand."""
    steps = story.steps
    ny, sf, london = (story.offices[c] for c in ("New York", "San Francisco", "London"))

    # Offices in two currencies; New York and San Francisco share one USD price book.
    usd_prices = [steps[f"office {c}"]["plan"]["prices"] for c in ("New York", "San Francisco")]
    assert usd_prices[0] == usd_prices[1]
    assert steps["office London"]["office"]["currency"] == "GBP"
    assert steps["pool enable"]["moved_total"] == 0
    assert steps["pool enable"]["price_mismatches"] == []

    # The seat moves from New York to San Francisco only after the grace period.
    assert steps["create refused"].code == 2
    assert "NO_LICENSE_AVAILABLE" in steps["create refused"].stderr
    in_grace = steps["quote in grace"]["quote"]
    assert (in_grace["from_pool"], in_grace["new_units"]) == (0, 1)
    assert steps["pool in grace"]["contents"] == [
        {"claimable": 0, "in_grace": 2, "license_type": "connect"}
    ], steps["pool in grace"]
    edsger_seat = story.users["Edsger Dijkstra"]["license_unit_id"]
    barbara_seat = story.users["Barbara Liskov"]["license_unit_id"]
    assert steps["returned"] == [edsger_seat, barbara_seat]
    margaret = story.users["Margaret Hamilton"]
    assert margaret["office_id"] == sf
    assert margaret["license_unit_id"] == edsger_seat  # oldest return first

    # A checkout with "1 from pool": Barbara's seat, free, plus one new license.
    quote = steps["quote"]["quote"]
    assert (quote["from_pool"], quote["new_units"], quote["restored"]) == (1, 1, 0)
    assert quote["message"] == "1 from pool, 1 new"
    bought = steps["purchase from pool"]["purchase"]
    assert (bought["from_pool"], bought["new_units"]) == (1, 1)
    assert bought["state"] == "PURCHASE_STATE_COMPLETED"
    assert barbara_seat in bought["unit_ids"]
    charged = int(bought["amount"]["amount_minor"])
    assert 0 < charged <= 2500  # one new license, prorated to the end of the cycle

    # The CSV: dry run, then 3 rows applied with licenses from San Francisco's spares.
    dry = steps["import check"]["import_job"]
    assert (dry["state"], dry["row_count"], dry["error_count"]) == (
        "IMPORT_STATE_VALIDATED",
        3,
        0,
    )
    needed = {
        q["license_type"]: (q["needed"], q["own_spare"], q["shortfall"]) for q in dry["quote"]
    }
    assert needed == {"phone_system": (3, 3, 0), "device_ip_phone": (2, 2, 0)}
    applied = steps["import status"]["import_job"]
    assert applied["state"] == "IMPORT_STATE_SUCCEEDED"
    assert applied["progress"]["rows_applied"] == 3
    assert applied["progress"]["units_committed"] == 5

    # One license at a time: an extension changed, an IP phone moved between licenses.
    assert len(steps["licenses"]["licenses"]) == 3
    assert steps["plans"]["plans"][0]["display_name"] == "New York"
    assert steps["margaret"]["license_source"] == "LICENSE_SOURCE_POOL"
    moved = steps["addon removed"]["returned_unit_ids"]
    assert len(moved) == 1
    katherine = steps["license"]["license"]
    assert (katherine["ext_key"], katherine["number"]) == ("204", "+14155550104")
    assert [a["addon_id"] for a in katherine["addons"]] == moved  # the same unit, back

    # Pooled credits: allowance first, then the shared $50.00.
    assert steps["grant"]["balance_minor"] == "5000"
    splits = {
        office: steps[f"usage {city}"]["usage"]["split"]
        for city, office in (("New York", ny), ("San Francisco", sf), ("London", london))
    }
    assert (splits[ny]["allowance_minor"], splits[ny]["company_pool_minor"]) == ("1000", "500")
    assert (splits[sf]["allowance_minor"], splits[sf]["company_pool_minor"]) == ("500", "1500")
    assert (splits[london]["allowance_minor"], splits[london]["company_pool_minor"]) == (
        "300",
        "0",
    )
    assert all(s["overage_minor"] == "0" for s in splits.values())
    balances = steps["balances"]
    pools = {
        p["currency"]: (p["pooling_enabled"], p["balance_minor"]) for p in balances["company_pools"]
    }
    assert pools["USD"] == (True, "3000")  # 5000 - 500 - 1500
    left = {o["office_id"]: o["allowance_remaining_minor"] for o in balances["offices"]}
    assert left == {ny: "0", sf: "0", london: "500"}
    totals = steps["totals"]
    per_office = {t["office_id"]: int(t["amount_minor"]) for t in totals["office_totals"]}
    assert per_office == {ny: 1500, sf: 2000, london: 300}
    per_currency = {t["currency"]: int(t["amount_minor"]) for t in totals["company_totals"]}
    assert per_currency == {"USD": 3500, "GBP": 300}

    # The invoice bills every live unit exactly once.
    invoice = steps["close"]["invoice"]
    assert steps["invoice"]["invoice"]["invoice_id"] == invoice["invoice_id"]
    units = {
        (line["office_id"], line["license_type"]): int(line["units"]) for line in invoice["lines"]
    }
    assert units == {
        (ny, "connect"): 1,  # Ada; Edsger's and Barbara's seats moved to San Francisco
        (sf, "connect"): 4,  # Grace, Margaret, Katherine, Dorothy
        (sf, "phone_system"): 3,
        (sf, "device_ip_phone"): 2,
        (london, "connect"): 1,
    }
    live = sum(int(counts["live"]) for counts in pool_counts.values())
    reconciliation = invoice["reconciliation"]
    assert reconciliation["balanced"] is True
    assert int(reconciliation["billed_units"]) == sum(units.values()) == live == 11
    assert int(reconciliation["live_units"]) == live

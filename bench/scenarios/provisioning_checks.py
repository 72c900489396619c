"""S9's checks: every row applied once, and a re-apply of the same import changes nothing.

In the provisioning database one Phone System license per row, no extension key or
number twice, the add-ons of every row; in the pool database the units assigned are the
ones the file needed; applying the same file with the same import id again returns that
import and leaves both databases as they were.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench.harness.database import fetch
from bench.harness.results import CheckResult
from bench.scenarios.provisioning_setup import ADDONS, BASE_LICENSE, Office
from licensing.provisioning.v1 import provisioning_pb2 as prov_pb2

# Provisioning database: Phone System licenses of the office, distinct keys and numbers.
LICENSES_SQL = """
    SELECT count(*) AS licenses,
           count(DISTINCT ext_key) AS ext_keys,
           count(DISTINCT number_key) AS numbers,
           count(*) FILTER (WHERE ext_key IS NULL OR number IS NULL) AS unconfigured,
           coalesce(max(updated_at)::text, '') AS last_change
    FROM provisioning.licenses WHERE office_id = $1 AND license_type = $2
"""
ADDONS_SQL = """
    SELECT a.license_type, count(*) AS n, coalesce(max(a.created_at)::text, '') AS last
    FROM provisioning.addons a JOIN provisioning.licenses l USING (license_id)
    WHERE l.office_id = $1 GROUP BY a.license_type ORDER BY a.license_type
"""
# Pool database: units per (type, state) of the office.
POOL_UNITS_SQL = """
    SELECT license_type, state, count(*) AS n FROM pool.units
    WHERE office_id = $1 GROUP BY license_type, state ORDER BY license_type, state
"""


def database_state(provisioning_url: str, pool_url: str, office: Office) -> dict[str, Any]:
    """What the two databases hold for the office (compared before and after a re-apply)."""
    office_id = uuid.UUID(office.office_id)
    licenses = fetch(provisioning_url, LICENSES_SQL, office_id, BASE_LICENSE)[0]
    addons = fetch(provisioning_url, ADDONS_SQL, office_id)
    units = fetch(pool_url, POOL_UNITS_SQL, office_id)
    return {
        "licenses": int(licenses["licenses"]),
        "ext_keys": int(licenses["ext_keys"]),
        "numbers": int(licenses["numbers"]),
        "unconfigured": int(licenses["unconfigured"]),
        "licenses_last_change": licenses["last_change"],
        "addons": {r["license_type"]: int(r["n"]) for r in addons},
        "addons_last": {r["license_type"]: r["last"] for r in addons},
        "pool_units": {f"{r['license_type']} {r['state']}": int(r["n"]) for r in units},
    }


def import_check(job: prov_pb2.Import, state: dict[str, Any], rows: int) -> CheckResult:
    problems: list[str] = []
    if job.state != prov_pb2.IMPORT_STATE_SUCCEEDED:
        problems.append(f"import ended {prov_pb2.ImportState.Name(job.state)}")
    if job.progress.rows_applied != rows:
        problems.append(f"{job.progress.rows_applied} rows applied of {rows}")
    for key in ("licenses", "ext_keys", "numbers"):
        if state[key] != rows:
            problems.append(f"{state[key]} {key.replace('_', ' ')} in the database, {rows} rows")
    if state["unconfigured"]:
        problems.append(f"{state['unconfigured']} licenses without extension key or number")
    for addon in ADDONS:
        if state["addons"].get(addon, 0) != rows:
            problems.append(f"{state['addons'].get(addon, 0)} {addon} add-ons, {rows} rows")
    for license_type in (BASE_LICENSE, *ADDONS):
        assigned = state["pool_units"].get(f"{license_type} ASSIGNED", 0)
        if assigned != rows:
            problems.append(f"pool: {assigned} {license_type} units ASSIGNED, {rows} rows")
    return CheckResult(
        "S9: every row applied once, no extension key or number twice",
        passed=not problems,
        facts={"rows": rows, "rows_applied": job.progress.rows_applied, **state},
        problems=tuple(problems),
    )


def reapply_check(
    first: prov_pb2.Import, again: prov_pb2.Import, before: dict[str, Any], after: dict[str, Any]
) -> CheckResult:
    problems: list[str] = []
    if again.import_id != first.import_id or again.state != first.state:
        problems.append(
            f"re-apply returned import {again.import_id} "
            f"{prov_pb2.ImportState.Name(again.state)}, not the first one"
        )
    changed = sorted(key for key in before if before[key] != after.get(key))
    if changed:
        problems.append(f"re-apply changed {changed}")
    return CheckResult(
        "S9: re-apply with the same import id changes nothing",
        passed=not problems,
        facts={"changed": changed},
        problems=tuple(problems),
    )
